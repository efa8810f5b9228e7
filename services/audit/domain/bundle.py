"""Export bundles: log entries with their proofs, the checkpoint and the key, in one JSON file.

A bundle can be checked offline by anyone (the format is documented in the service README)::

    {
      "format": "incentives.audit.bundle/v1",
      "application_id": "APP-1" | null,          # null: the whole log
      "verifier_key": "<name>+<key id hex>+<base64(0x01 || key)>",
      "checkpoint": "<signed note>",
      "entries": [{"index": 0, "leaf": "<base64>", "topic": "...", "partition": 0,
                   "offset": 0, "logged_at": "...", "inclusion_proof": ["<base64>", ...]}],
      "workflows": [{"workflow_id": "APP-1", "run_id": "...", "history": {"events": [...]}}]
    }

``workflows`` (optional) carries the applications' Temporal workflow histories, in Temporal's
own history JSON. They are not leaves of the log, so no proof covers them: they are there to be
read and replayed against the workflow code (``incentives audit workflows --from``).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from services.audit.domain.checkpoint import Checkpoint, CheckpointError, Verifier
from services.audit.domain.leaves import LeafFormatError, parse_leaf
from services.audit.domain.merkle import (
    ProofError,
    leaf_hash,
    root_from_leaf_hashes,
    verify_inclusion,
)

FORMAT = "incentives.audit.bundle/v1"


class BundleError(ValueError):
    """A bundle that is malformed or does not verify."""


def make_bundle(
    *,
    application_id: str | None,
    verifier_key: str,
    checkpoint: str,
    entries: Sequence[Mapping[str, Any]],
    workflows: Sequence[Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """A bundle document (entries already carry ``inclusion_proof``)."""
    bundle: dict[str, Any] = {
        "format": FORMAT,
        "application_id": application_id,
        "verifier_key": verifier_key.strip(),
        "checkpoint": checkpoint,
        "entries": [dict(entry) for entry in entries],
    }
    if workflows is not None:
        bundle["workflows"] = [dict(run) for run in workflows]
    return bundle


def inclusion_of(records: Sequence[Mapping[str, Any]], checkpoint: Checkpoint) -> dict[int, bool]:
    """Per leaf index of an application's history records: whether its proof holds."""
    included: dict[int, bool] = {}
    for record in records:
        try:
            verify_inclusion(
                leaf_hash(base64.b64decode(record["leaf"])),
                record["index"],
                checkpoint.size,
                [base64.b64decode(p) for p in record["inclusion_proof"]],
                checkpoint.root,
            )
            included[record["index"]] = True
        except (ProofError, binascii.Error):
            included[record["index"]] = False
    return included


def history_bundle(
    history: Mapping[str, Any],
    verifier_key: str,
    *,
    workflows: Sequence[Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """The bundle of one application from its ``/v1/applications/{id}/history`` answer (and
    its workflow runs, when given)."""
    return make_bundle(
        workflows=workflows,
        application_id=str(history["application_id"]),
        verifier_key=verifier_key,
        checkpoint=str(history["checkpoint"]),
        entries=[
            {
                "index": r["index"],
                "leaf": r["leaf"],
                "topic": r["topic"],
                "logged_at": r["logged_at"],
                "inclusion_proof": r["inclusion_proof"],
            }
            for r in history["records"]
        ],
    )


def _b64(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        raise BundleError(f"{what} is not a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except binascii.Error as exc:
        raise BundleError(f"{what} is not base64: {exc}") from exc


def verify_bundle(
    bundle: Mapping[str, Any],
    *,
    verifier: Verifier | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[int, int]:
    """Check every entry's inclusion in the bundle's signed checkpoint; ``(entries, tree size)``.

    ``verifier`` pins the log's key; without it the bundle's own key is used (which proves only
    that the bundle is self-consistent: compare the key with one obtained independently).
    Raises :class:`BundleError` naming the first problem.
    """
    if bundle.get("format") != FORMAT:
        raise BundleError(f"not a {FORMAT} bundle")
    try:
        key = verifier or Verifier.from_key(str(bundle.get("verifier_key", "")))
        checkpoint = key.open_checkpoint(str(bundle.get("checkpoint", "")))
    except CheckpointError as exc:
        raise BundleError(f"checkpoint: {exc}") from exc
    entries = bundle.get("entries")
    if not isinstance(entries, list):
        raise BundleError("entries must be a list")
    application_id = bundle.get("application_id")
    hashes: list[bytes] = []
    previous = -1
    for position, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("index"), int):
            raise BundleError(f"entry {position} has no index")
        index: int = entry["index"]
        if index <= previous:
            raise BundleError(f"entry {position}: indexes must increase (leaf {index})")
        previous = index
        leaf = _b64(entry.get("leaf"), f"leaf {index}")
        try:
            record = parse_leaf(leaf)
        except LeafFormatError as exc:
            raise BundleError(f"leaf {index}: {exc}") from exc
        if application_id is not None and record.key != str(application_id).encode():
            raise BundleError(f"leaf {index} is not a record of {application_id}")
        if record.topic != entry.get("topic"):
            raise BundleError(f"leaf {index}: topic differs from the leaf's")
        proof_values = entry.get("inclusion_proof")
        if not isinstance(proof_values, list):
            raise BundleError(f"leaf {index} has no inclusion proof")
        proof = [_b64(p, f"proof of leaf {index}") for p in proof_values]
        h = leaf_hash(leaf)
        try:
            verify_inclusion(h, index, checkpoint.size, proof, checkpoint.root)
        except ProofError as exc:
            raise BundleError(f"leaf {index}: {exc}") from exc
        hashes.append(h)
        if progress is not None:
            progress(position + 1, len(entries))
    if application_id is None:
        if len(hashes) != checkpoint.size or previous != checkpoint.size - 1:
            raise BundleError(
                f"a whole-log bundle has all {checkpoint.size} leaves; this one has {len(hashes)}"
            )
        if root_from_leaf_hashes(hashes) != checkpoint.root:
            raise BundleError("the leaves do not hash to the checkpoint's root")
    return len(entries), checkpoint.size
