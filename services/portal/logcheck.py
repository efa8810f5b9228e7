"""Checking the audit log from the portal, as an outside verifier does: trust only the key.

The checks are the audit log's own verification library (``services.audit.domain``: pure,
written to check a log from the outside over its API, as ``incentives audit`` does); the
portal only fetches what they read through the audit API, with the auditor's token.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx

from services.audit.domain.bundle import (
    BundleError,
    history_bundle,
    inclusion_of,
    verify_bundle,
)
from services.audit.domain.checkpoint import Checkpoint, CheckpointError, Verifier
from services.audit.domain.verification import VerifyReport, verify_log
from services.portal.clients import Unavailable, problem_of


@dataclass
class HistoryCheck:
    """An application's records checked against the checkpoint they came with."""

    checkpoint: Checkpoint | None
    #: Why the checkpoint did not verify, if it did not.
    checkpoint_error: str | None = None
    #: Per leaf index: whether its inclusion proof holds.
    included: dict[int, bool] = field(default_factory=dict)

    @property
    def verified(self) -> bool:
        return self.checkpoint is not None and all(self.included.values())


def check_history(history: dict[str, Any], verifier_key: str) -> HistoryCheck:
    """Verify the checkpoint's signature and each record's inclusion proof."""
    try:
        head = Verifier.from_key(verifier_key).open_checkpoint(history["checkpoint"])
    except CheckpointError as exc:
        return HistoryCheck(checkpoint=None, checkpoint_error=str(exc))
    return HistoryCheck(checkpoint=head, included=inclusion_of(history["records"], head))


def export_bundle(history: dict[str, Any], verifier_key: str) -> dict[str, Any]:
    """The application's export bundle; :class:`BundleError` if it does not verify."""
    bundle = history_bundle(history, verifier_key)
    verify_bundle(bundle)
    return bundle


class _ApiLogSource:
    """The audit API as the verifier reads it (blocking: run in a worker thread)."""

    def __init__(self, client: httpx.Client) -> None:
        self._client = client

    def _get(self, path: str, **params: int) -> httpx.Response:
        response = self._client.get(path, params=params or None)
        response.raise_for_status()
        return response

    def checkpoint(self) -> str:
        return self._get("/v1/log/checkpoint").text

    def verifier_key(self) -> str:
        return self._get("/v1/log/key").text

    def entries(self, start: int, end: int) -> Sequence[tuple[int, bytes]]:
        body = self._get("/v1/log/entries", start=start, end=end).json()
        return [(int(e["index"]), base64.b64decode(e["leaf"])) for e in body["entries"]]

    def inclusion_proof(self, index: int, tree_size: int) -> list[bytes]:
        body = self._get("/v1/log/proof/inclusion", index=index, tree_size=tree_size).json()
        return [base64.b64decode(p) for p in body["proof"]]

    def consistency_proof(self, first: int, second: int) -> list[bytes]:
        body = self._get("/v1/log/proof/consistency", first=first, second=second).json()
        return [base64.b64decode(p) for p in body["proof"]]


async def verify_whole_log(base_url: str, token: str, wait: float) -> VerifyReport:
    """Recompute the whole tree from the stored leaves and check it against the checkpoint."""

    def run() -> VerifyReport:
        with httpx.Client(
            base_url=base_url, timeout=wait, headers={"Authorization": f"Bearer {token}"}
        ) as client:
            return verify_log(_ApiLogSource(client))

    try:
        return await anyio.to_thread.run_sync(run)
    except httpx.HTTPStatusError as exc:
        raise problem_of(exc.response) from exc
    except httpx.TransportError as exc:
        raise Unavailable(str(exc)) from exc


__all__ = [
    "BundleError",
    "HistoryCheck",
    "check_history",
    "export_bundle",
    "verify_whole_log",
]
