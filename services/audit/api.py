"""The audit API: read only, for auditors and admins. Routes decode, read, and map.

Paths are part of the contract outside verifiers rely on (see the service README).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import PlainTextResponse
from sqlalchemy.ext.asyncio import AsyncConnection

from services.audit import store
from services.audit.domain.checkpoint import Verifier
from services.audit.domain.merkle import ProofError
from services.audit.domain.state import NothingLogged, StateView, logged_events, state_as_of
from services.audit.store import SignedCheckpoint
from services.audit.views import (
    ConsistencyProofView,
    EntriesView,
    EntryView,
    HistoryItem,
    HistoryView,
    InclusionProofView,
    b64,
    summarise,
)
from services.kit.auth import Principal, Role, require_roles
from services.kit.errors import DependencyUnavailable, NotFound, ValidationFailed
from services.kit.http import problem_responses

#: Bound of every index and size parameter (the log's indexes are 64-bit integers).
MAX_INDEX = 2**62

Reader = Annotated[Principal, require_roles(Role.AUDITOR, Role.ADMIN)]

_PROBLEMS = problem_responses(
    401,
    403,
    422,
    503,
    descriptions={
        403: "The caller is neither an auditor nor an admin.",
        422: "Invalid parameters, with the reason per field.",
        503: "The log's database is unavailable, or the log has not signed its first checkpoint.",
    },
)


async def _connection(request: Request) -> AsyncIterator[AsyncConnection]:
    async with request.app.state.service.engine.connect() as conn:
        yield conn


Conn = Annotated[AsyncConnection, Depends(_connection)]


def _invalid(parameter: str, message: str, kind: str) -> ValidationFailed:
    return ValidationFailed(
        message,
        extensions={
            "errors": [
                {"parameter": parameter, "field": parameter, "message": message, "type": kind}
            ]
        },
    )


async def _latest(conn: AsyncConnection) -> SignedCheckpoint:
    latest = await store.latest_checkpoint(conn)
    if latest is None:  # the writer signs the empty tree at start; not there yet
        raise DependencyUnavailable("the log has not signed its first checkpoint yet")
    return latest


def _within_log(parameter: str, size: int, latest: SignedCheckpoint) -> None:
    if size > latest.checkpoint.size:
        raise _invalid(
            parameter,
            f"tree size {size} is beyond the log: the latest checkpoint has "
            f"{latest.checkpoint.size} leaves",
            "beyond_log",
        )


def audit_router() -> APIRouter:
    """The ``/v1/log`` and ``/v1/applications/{id}/history`` and ``/state`` routes."""
    router = APIRouter(prefix="/v1", tags=["audit log"], responses=_PROBLEMS)

    @router.get(
        "/log/checkpoint",
        response_class=PlainTextResponse,
        summary="The latest signed checkpoint (C2SP tlog-checkpoint signed note)",
    )
    async def get_checkpoint(_who: Reader, conn: Conn) -> str:
        return (await _latest(conn)).note

    @router.get(
        "/log/key",
        response_class=PlainTextResponse,
        summary="The verifier key, `<name>+<key id hex>+<base64(0x01 || Ed25519 key)>`",
    )
    async def get_key(_who: Reader, request: Request) -> str:
        verifier: Verifier = request.app.state.audit_verifier
        return verifier.key_text() + "\n"

    @router.get("/log/entries", summary="Leaves `start <= index < end`, at most 1,000")
    async def get_entries(
        _who: Reader,
        conn: Conn,
        start: Annotated[int, Query(ge=0, le=MAX_INDEX, description="First index.")],
        end: Annotated[int, Query(ge=1, le=MAX_INDEX, description="One past the last index.")],
    ) -> EntriesView:
        if end <= start:
            raise _invalid("end", f"end ({end}) must be greater than start ({start})", "range")
        rows = await store.entries(conn, start, end)
        return EntriesView(entries=[EntryView.of(row) for row in rows])

    @router.get("/log/proof/inclusion", summary="RFC 9162 inclusion proof of one leaf")
    async def get_inclusion(
        _who: Reader,
        conn: Conn,
        index: Annotated[int, Query(ge=0, le=MAX_INDEX, description="The leaf index.")],
        tree_size: Annotated[
            int, Query(ge=1, le=MAX_INDEX, description="Size of the tree it is in.")
        ],
    ) -> InclusionProofView:
        _within_log("tree_size", tree_size, await _latest(conn))
        if index >= tree_size:
            raise _invalid(
                "index", f"leaf {index} is not in a tree of {tree_size} leaves", "beyond_tree"
            )
        proof = await store.inclusion_proof(conn, index, tree_size)
        return InclusionProofView(index=index, tree_size=tree_size, proof=[b64(h) for h in proof])

    @router.get("/log/proof/consistency", summary="RFC 9162 consistency proof between sizes")
    async def get_consistency(
        _who: Reader,
        conn: Conn,
        first: Annotated[int, Query(ge=1, le=MAX_INDEX, description="The earlier tree size.")],
        second: Annotated[int, Query(ge=1, le=MAX_INDEX, description="The later tree size.")],
    ) -> ConsistencyProofView:
        if first > second:
            raise _invalid("first", f"first ({first}) is larger than second ({second})", "order")
        _within_log("second", second, await _latest(conn))
        try:
            proof = await store.consistency_proof(conn, first, second)
        except ProofError as exc:
            raise _invalid("first", str(exc), "proof") from exc
        return ConsistencyProofView(first=first, second=second, proof=[b64(h) for h in proof])

    @router.get(
        "/applications/{application_id}/history",
        summary="An application's records across every topic, each with its inclusion proof",
    )
    async def get_history(_who: Reader, conn: Conn, application_id: str) -> HistoryView:
        latest = await _latest(conn)
        size = latest.checkpoint.size
        rows = await store.subject_entries(conn, application_id, below=size)
        proofs = await store.inclusion_proofs(conn, [row.index for row in rows], size)
        return HistoryView(
            application_id=application_id,
            tree_size=size,
            checkpoint=latest.note,
            records=[
                HistoryItem(
                    index=row.index,
                    topic=row.topic,
                    logged_at=row.logged_at,
                    envelope=summarise(row.leaf),
                    leaf=b64(row.leaf),
                    inclusion_proof=[b64(h) for h in proof],
                )
                for row, proof in zip(rows, proofs, strict=True)
            ],
        )

    @router.get(
        "/applications/{application_id}/state",
        summary="An application's state at an instant, rebuilt from the log",
        responses=problem_responses(
            404, descriptions={404: "No event of the application had occurred by `as_of`."}
        ),
    )
    async def get_state(
        _who: Reader,
        conn: Conn,
        application_id: str,
        as_of: Annotated[
            datetime | None,
            Query(
                description="The instant, RFC 3339 with a UTC offset; default now. Events that "
                "had occurred by then (their `occurred_at`) count.",
                examples=["2026-12-01T10:00:00Z"],
            ),
        ] = None,
    ) -> StateView:
        if as_of is not None and as_of.utcoffset() is None:
            raise _invalid("as_of", "as_of needs a UTC offset, e.g. 2026-12-01T10:00:00Z", "naive")
        instant = datetime.now(UTC) if as_of is None else as_of.astimezone(UTC)
        size = (await _latest(conn)).checkpoint.size
        rows = await store.subject_entries(conn, application_id, below=size)
        events, undecodable = logged_events((row.index, row.leaf) for row in rows)
        try:
            return state_as_of(
                application_id, events, instant, tree_size=size, undecodable=undecodable
            )
        except NothingLogged as exc:
            raise NotFound(str(exc)) from exc

    return router
