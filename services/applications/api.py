"""The firm-facing HTTP API under ``/v1/applications``.

Routes are thin: they check the caller, call the domain, and write the application, its
timeline entry, its idempotency key and its outbox message in one unit of work with one commit.
Responses are serialised once, straight from the view models (FastAPI would otherwise validate
the whole application content a second time on the way out).
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any, Final

from fastapi import APIRouter, Body, Depends, Header, Path, Query, Request, Security
from fastapi.responses import Response
from fastapi.security import HTTPBearer
from pydantic import BaseModel
from sqlalchemy.exc import IntegrityError
from sqlmodel.ext.asyncio.session import AsyncSession

from contracts import catalog
from contracts.envelope import Actor, utcnow
from contracts.topics import topic_for_type
from contracts.v1.applications import (
    CONTENT_EXAMPLE,
    ApplicationAmended,
    ApplicationContent,
    ApplicationSubmitted,
    ApplicationWithdrawn,
)
from contracts.v1.common import WithdrawalReason
from services.applications import store
from services.applications.domain import (
    Action,
    ActionNotAllowed,
    FieldIssue,
    InformationRequest,
    InvalidContent,
    Status,
    changed_fields,
    check_submission,
    complete_content,
    content_issues,
    ensure_allowed,
    merge_patch,
)
from services.applications.models import ApplicationRecord, IdempotencyKey, TimelineEntry
from services.applications.schemas import (
    AMEND_EXAMPLE,
    PARTIAL_CONTENT_EXAMPLE,
    WITHDRAW_EXAMPLE,
    AmendRequest,
    ApplicationContentDraft,
    ApplicationPage,
    ApplicationView,
    WithdrawRequest,
)
from services.applications.views import json_response, to_summary, to_view
from services.kit.auth import Principal, Role, current_principal
from services.kit.errors import Conflict, Forbidden, ValidationFailed
from services.kit.problems import PROBLEM_RESPONSES, Problem, field_errors
from services.kit.runtime import Service
from services.kit.uow import UnitOfWork

#: The ``producer`` of this service's envelopes.
PRODUCER: Final = "applications"
#: Where this service's events go.
EVENTS_TOPIC: Final = topic_for_type("application.submitted").name
#: Response header marking a replay of an idempotent request.
REPLAYED_HEADER: Final = "Idempotent-Replayed"

_IDENTIFIER = re.compile(r"^\S{1,100}$")

# --- OpenAPI: authentication and error responses -------------------------------------------------

#: Documents the bearer scheme in OpenAPI; verification is the kit's (``current_principal``).
bearer = HTTPBearer(
    auto_error=False,
    bearerFormat="JWT",
    scheme_name="bearer",
    description=(
        "A JWT signed by the program. Firms hold the role `firm:<firm-id>`; staff hold "
        "`reviewer`, `supervisor`, `auditor` or `admin`. For development, "
        "`incentives token --role firm --firm ACME` prints one."
    ),
)

_413: dict[int | str, dict[str, Any]] = {
    413: {
        "model": Problem,
        "content": {"application/problem+json": {}},
        "description": "Request body larger than the limit",
    }
}


def _responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    out: dict[int | str, dict[str, Any]] = {401: PROBLEM_RESPONSES[401]}
    for status in statuses:
        out.update(_413 if status == 413 else {status: PROBLEM_RESPONSES[status]})
    return out


router = APIRouter(
    prefix="/v1/applications",
    tags=["applications"],
    dependencies=[Security(bearer)],
)

# --- parameters ----------------------------------------------------------------------------------

ApplicationId = Annotated[
    str,
    Path(
        description="The application id, as returned when it was created.",
        examples=["app_3f2a9c0d41e84b6f9d7e5a1b2c3d4e5f"],
        max_length=100,
        pattern=r"^\S+$",
    ),
]

_KEY_DOC = (
    "A unique key per intended operation (a UUID is a good choice), 8 to 200 printable ASCII "
    "characters. Retrying with the same key and the same body acts once: the retry gets the "
    f"first response's status code and the application as it is now (header "
    f"`{REPLAYED_HEADER}: true`). The same key with a different body is refused with 422. Keys "
    "are scoped to the firm and kept."
)
IdempotencyKeyHeader = Annotated[
    str,
    Header(
        alias="Idempotency-Key",
        description=_KEY_DOC,
        examples=["5b0f6a4e-2c1d-4c8e-9e7a-1f2d3c4b5a69"],
        min_length=8,
        max_length=200,
        pattern=r"^[\x21-\x7e]+$",
    ),
]
OptionalIdempotencyKeyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        description="Optional. " + _KEY_DOC,
        examples=["0c9d8e7f-6a5b-4c3d-2e1f-0a9b8c7d6e5f"],
        min_length=8,
        max_length=200,
        pattern=r"^[\x21-\x7e]+$",
    ),
]

_DRAFT_EXAMPLES = {
    "partial": {
        "summary": "A partial draft",
        "description": "Fill in what you have; every field is optional in a draft.",
        "value": PARTIAL_CONTENT_EXAMPLE,
    },
    "complete": {
        "summary": "A complete application",
        "description": "Everything the program judges; this draft can be submitted as is.",
        "value": CONTENT_EXAMPLE,
    },
}
_CONTENT_EXAMPLES = {
    "complete": {
        "summary": "A complete application",
        "description": (
            "A firm asking for a grant, GPU rack units and office seats, and sandbox access, for "
            "a health-sector proposal, with training, university and exchange commitments, both "
            "attestations and one supporting document."
        ),
        "value": CONTENT_EXAMPLE,
    }
}

# --- callers -------------------------------------------------------------------------------------


async def _caller(request: Request) -> Principal:
    """The verified caller, or a 401 problem (the kit's check, run on the event loop).

    Verifying an HS256 token is a few microseconds of CPU: run inline rather than as a sync
    dependency, which FastAPI would send to its thread pool at a cost of thread hand-offs and
    GIL contention on every request.
    """
    return current_principal(request)


Caller = Annotated[Principal, Depends(_caller)]


async def _firm_user(principal: Caller) -> Principal:
    """The caller, if a firm user: only firms change applications; staff read them."""
    if principal.role is not Role.FIRM:
        raise Forbidden(
            f"role {principal.role} has read-only access to applications; only firms change them"
        )
    if principal.firm_id is None or not _IDENTIFIER.fullmatch(principal.firm_id):
        raise Forbidden("the token's firm id is not a valid identifier (no spaces, 1-100 chars)")
    return principal


FirmUser = Annotated[Principal, Depends(_firm_user)]


def _service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


# --- errors --------------------------------------------------------------------------------------


def _invalid(exc: InvalidContent, prefix: tuple[str, ...] = ()) -> ValidationFailed:
    errors = field_errors(
        [
            {"loc": ("body", *prefix, *issue.path), "msg": issue.message, "type": issue.type}
            for issue in exc.issues
        ]
    )
    return ValidationFailed(str(exc), extensions={"errors": errors})


def _check_draft(content: dict[str, Any]) -> None:
    issues = content_issues(content)
    if issues:
        raise _invalid(InvalidContent(f"the draft has {len(issues)} invalid field(s)", issues))


def _not_allowed(exc: ActionNotAllowed) -> Conflict:
    return Conflict(
        str(exc),
        extensions={
            "current_status": exc.status.value,
            "allowed_actions": [action.value for action in exc.allowed],
        },
    )


def _ensure(record: ApplicationRecord, action: Action) -> None:
    try:
        ensure_allowed(Status(record.status), action)
    except ActionNotAllowed as exc:
        raise _not_allowed(exc) from None


def _key_reused(stored: IdempotencyKey) -> ValidationFailed:
    message = (
        f"Idempotency-Key was already used for a different request ({stored.operation} of "
        f"{stored.application_id}); use a new key for a new operation"
    )
    return ValidationFailed(
        message,
        extensions={
            "errors": [
                {
                    "header": "Idempotency-Key",
                    "field": "Idempotency-Key",
                    "message": message,
                    "type": "idempotency_key_reused",
                }
            ]
        },
    )


# --- idempotency ---------------------------------------------------------------------------------


def fingerprint(operation: str, target: str, body: bytes) -> str:
    """What a keyed request asked for: its operation, its target and its canonical body."""
    return hashlib.sha256(b"\x1f".join((operation.encode(), target.encode(), body))).hexdigest()


async def _replay(
    session: AsyncSession, principal: Principal, key: str, request_fingerprint: str
) -> Response | None:
    """The first response's replay if ``key`` was used for this very request; 422 if for another.

    ``None`` when the key has not been used.
    """
    assert principal.firm_id is not None
    stored = await store.idempotency_key(session, principal.firm_id, key)
    if stored is None:
        return None
    if stored.fingerprint != request_fingerprint:
        raise _key_reused(stored)
    record = await store.get_application(session, stored.application_id, principal)
    entries = await store.timeline(session, record.id)
    headers = {REPLAYED_HEADER: "true"}
    if stored.status_code == 201:
        headers["Location"] = f"{router.prefix}/{record.id}"
    return json_response(to_view(record, entries, principal), stored.status_code, headers)


async def _replay_after_conflict(
    service: Service,
    principal: Principal,
    key: str | None,
    request_fingerprint: str,
    error: IntegrityError,
) -> Response:
    """After a commit hit a unique index: a concurrent or earlier use of the same key.

    Anything else (no key, or the key is free after all) is a genuine error and is re-raised.
    """
    if key is not None:
        async with service.uow() as uow:
            replay = await _replay(uow.session, principal, key, request_fingerprint)
        if replay is not None:
            return replay
    raise error


def _stage_key(
    uow: UnitOfWork,
    principal: Principal,
    key: str | None,
    *,
    operation: str,
    request_fingerprint: str,
    application_id: str,
    status_code: int,
    now: datetime,
) -> None:
    if key is None:
        return
    assert principal.firm_id is not None
    # Inserted with the state change: a concurrent request with the same key waits on this
    # row's unique index, then fails its commit and replays what this one committed.
    uow.session.add(
        IdempotencyKey(
            firm_id=principal.firm_id,
            key=key,
            operation=operation,
            fingerprint=request_fingerprint,
            application_id=application_id,
            status_code=status_code,
            created_at=now,
        )
    )


async def _commit_with_key(
    uow: UnitOfWork,
    record: ApplicationRecord,
    principal: Principal,
    key: str | None,
    operation: str,
    request_fingerprint: str,
    now: datetime,
) -> list[TimelineEntry]:
    """Stage the idempotency key (answer 200), read the timeline, commit; return the timeline."""
    _stage_key(
        uow,
        principal,
        key,
        operation=operation,
        request_fingerprint=request_fingerprint,
        application_id=record.id,
        status_code=200,
        now=now,
    )
    entries = await store.timeline(uow.session, record.id)
    await uow.commit()
    return entries


# --- staging events ------------------------------------------------------------------------------


def _timeline_entry(
    record: ApplicationRecord,
    *,
    event_id: uuid.UUID,
    event_type: str,
    at: datetime,
    status: Status | None,
    actor: Actor,
    summary: str,
    reasons: Sequence[str] = (),
) -> TimelineEntry:
    return TimelineEntry(
        application_id=record.id,
        event_id=event_id,
        event_type=event_type,
        occurred_at=at,
        status=status.value if status is not None else None,
        actor_kind=actor.kind.value,
        actor_id=actor.id,
        actor_firm_id=actor.firm_id,
        summary=summary,
        reasons=list(reasons),
        staff_only=False,
    )


def _stage_event(
    uow: UnitOfWork,
    record: ApplicationRecord,
    message_type: str,
    payload: BaseModel,
    *,
    principal: Principal,
    now: datetime,
    status: Status,
    summary: str,
    reasons: Sequence[str] = (),
    causation_id: uuid.UUID | None = None,
) -> TimelineEntry:
    """Stage the event in the outbox and its timeline entry, and move the record to ``status``."""
    envelope = catalog.make_envelope(
        message_type,
        payload,
        subject=record.id,
        actor=principal.to_actor(),
        producer=PRODUCER,
        correlation_id=record.correlation_id,
        causation_id=causation_id,
        occurred_at=now,
    )
    uow.add_outbox(envelope, EVENTS_TOPIC)
    record.status = status.value
    # The projection orders facts by time: the status's time is exactly the event's.
    record.status_changed_at = envelope.occurred_at
    record.status_reasons = list(reasons)
    record.updated_at = now
    entry = _timeline_entry(
        record,
        event_id=envelope.event_id,
        event_type=message_type,
        at=envelope.occurred_at,
        status=status,
        actor=envelope.actor,
        summary=summary,
        reasons=reasons,
    )
    uow.session.add(record)
    uow.session.add(entry)
    return entry


def _stage_submission(
    uow: UnitOfWork,
    record: ApplicationRecord,
    content: ApplicationContent,
    content_json: dict[str, Any],
    *,
    principal: Principal,
    now: datetime,
) -> TimelineEntry:
    record.content = content_json
    record.revision = 1
    record.submitted_at = now
    payload = ApplicationSubmitted(
        application_id=record.id,
        firm_id=record.firm_id,
        revision=1,
        content=content,
        submitted_at=now,
    )
    return _stage_event(
        uow,
        record,
        "application.submitted",
        payload,
        principal=principal,
        now=now,
        status=Status.SUBMITTED,
        summary="Application submitted (revision 1).",
    )


def _new_record(principal: Principal, content: dict[str, Any], now: datetime) -> ApplicationRecord:
    assert principal.firm_id is not None
    return ApplicationRecord(
        id=f"app_{uuid.uuid4().hex}",
        firm_id=principal.firm_id,
        created_by=principal.sub,
        correlation_id=uuid.uuid4(),  # the application's journey: a new one per application
        status=Status.DRAFT.value,
        status_changed_at=now,
        status_reasons=[],
        revision=0,
        content=content,
        created_at=now,
        updated_at=now,
    )


def _location(record: ApplicationRecord) -> dict[str, str]:
    return {"Location": f"{router.prefix}/{record.id}"}


# --- routes: reading -----------------------------------------------------------------------------


@router.get(
    "",
    response_model=ApplicationPage,
    summary="List applications",
    responses=_responses(422),
)
async def list_applications(
    request: Request,
    principal: Caller,
    status: Annotated[
        Status | None,
        Query(description="Only applications with this status.", examples=["eligible"]),
    ] = None,
    firm_id: Annotated[
        str | None,
        Query(
            description="Staff only: only this firm's applications (firms always see their own).",
            examples=["ACME"],
            max_length=100,
        ),
    ] = None,
    limit: Annotated[
        int, Query(ge=1, le=100, description="Page size, 1 to 100.", examples=[20])
    ] = 20,
    cursor: Annotated[
        str | None,
        Query(
            max_length=400,
            description="The `next_cursor` of the previous page; omit for the first page.",
            examples=["MjAyNi0xMS0yNlQxMDozMDowMCswMDowMHxhcHBfM2Yy"],
        ),
    ] = None,
) -> Response:
    """A firm's own applications (drafts included), newest first; staff see every submitted one.

    Paginated by cursor: follow `next_cursor` until it is null.
    """
    try:
        after = store.Cursor.decode(cursor) if cursor else None
    except store.InvalidCursor as exc:
        raise ValidationFailed(
            "invalid cursor",
            extensions={
                "errors": [
                    {
                        "parameter": "cursor",
                        "field": "cursor",
                        "message": str(exc),
                        "type": "cursor",
                    }
                ]
            },
        ) from None
    # Views are built inside the unit of work: leaving it rolls back, which expires the rows.
    async with _service(request).uow() as uow:
        records, next_cursor = await store.list_applications(
            uow.session, principal, limit=limit, cursor=after, status=status, firm_id=firm_id
        )
        page = ApplicationPage(
            items=[to_summary(r) for r in records],
            next_cursor=next_cursor.encode() if next_cursor else None,
        )
    return json_response(page)


@router.get(
    "/{application_id}",
    response_model=ApplicationView,
    summary="Get an application with its status and timeline",
    responses=_responses(404, 422),
)
async def get_application(
    request: Request, application_id: ApplicationId, principal: Caller
) -> Response:
    """The application, its status (with the eligibility rule set that decided), and its timeline.

    A firm sees only its own applications: any other id answers 404.
    """
    async with _service(request).uow() as uow:
        record = await store.get_application(uow.session, application_id, principal)
        entries = await store.timeline(uow.session, application_id)
        view = to_view(record, entries, principal)
    return json_response(view)


# --- routes: drafts ------------------------------------------------------------------------------


@router.post(
    "",
    status_code=201,
    response_model=ApplicationView,
    summary="Create a draft",
    responses=_responses(403, 413, 422),
)
async def create_draft(
    request: Request,
    principal: FirmUser,
    draft: Annotated[ApplicationContentDraft, Body(openapi_examples=_DRAFT_EXAMPLES)],
) -> Response:
    """Start an application. Any part of the content may be missing; whatever is given is checked.

    The response lists `missing_for_submission`: what is still needed before submitting.
    """
    content = draft.model_dump(mode="json", exclude_none=True)
    _check_draft(content)
    now = utcnow()
    record = _new_record(principal, content, now)
    entry = _timeline_entry(
        record,
        event_id=uuid.uuid4(),
        event_type="application.draft_created",
        at=now,
        status=Status.DRAFT,
        actor=principal.to_actor(),
        summary="Draft created.",
    )
    async with _service(request).uow() as uow:
        uow.session.add(record)
        uow.session.add(entry)
        await uow.commit()
    return json_response(to_view(record, [entry], principal), 201, _location(record))


async def _edit_draft(
    request: Request,
    application_id: str,
    principal: Principal,
    patch: dict[str, Any] | None,
    replacement: dict[str, Any] | None,
) -> Response:
    async with _service(request).uow() as uow:
        record = await store.get_application(uow.session, application_id, principal, lock=True)
        _ensure(record, Action.EDIT)
        if replacement is not None:
            content = replacement
        else:
            content = merge_patch(record.content, patch or {})
        _check_draft(content)
        record.content = content
        record.updated_at = utcnow()
        uow.session.add(record)
        entries = await store.timeline(uow.session, application_id)
        await uow.commit()
    return json_response(to_view(record, entries, principal))


@router.put(
    "/{application_id}",
    response_model=ApplicationView,
    summary="Replace a draft",
    responses=_responses(403, 404, 409, 413, 422),
)
async def replace_draft(
    request: Request,
    application_id: ApplicationId,
    principal: FirmUser,
    draft: Annotated[ApplicationContentDraft, Body(openapi_examples=_DRAFT_EXAMPLES)],
) -> Response:
    """Replace the whole draft content. Only drafts can be edited: 409 once submitted."""
    content = draft.model_dump(mode="json", exclude_none=True)
    return await _edit_draft(request, application_id, principal, None, content)


@router.patch(
    "/{application_id}",
    response_model=ApplicationView,
    summary="Edit part of a draft (JSON merge patch)",
    responses=_responses(403, 404, 409, 413, 422),
)
async def patch_draft(
    request: Request,
    application_id: ApplicationId,
    principal: FirmUser,
    patch: Annotated[
        ApplicationContentDraft,
        Body(
            media_type="application/merge-patch+json",
            openapi_examples={
                "set": {
                    "summary": "Set some fields",
                    "value": {"proposal": {"local_jobs": 40}},
                },
                "remove": {
                    "summary": "Remove a field",
                    "description": "`null` removes a field (RFC 7396).",
                    "value": {"incentives": {"grant": None}},
                },
            },
        ),
    ],
) -> Response:
    """Change parts of the draft (RFC 7396): objects merge, `null` removes, lists are replaced.

    Only drafts can be edited: 409 once submitted.
    """
    return await _edit_draft(
        request, application_id, principal, patch.model_dump(mode="json", exclude_unset=True), None
    )


@router.delete(
    "/{application_id}",
    status_code=204,
    summary="Delete a draft",
    responses=_responses(403, 404, 409, 422),
)
async def delete_draft(
    request: Request, application_id: ApplicationId, principal: FirmUser
) -> Response:
    """Delete a draft. Submitted applications are never deleted: withdraw them instead (409)."""
    async with _service(request).uow() as uow:
        record = await store.get_application(uow.session, application_id, principal, lock=True)
        _ensure(record, Action.DELETE)
        for entry in await store.timeline(uow.session, application_id):
            await uow.session.delete(entry)
        await uow.session.delete(record)
        await uow.commit()
    return Response(status_code=204)


# --- routes: submission --------------------------------------------------------------------------


@router.post(
    "/submissions",
    status_code=201,
    response_model=ApplicationView,
    summary="Submit a complete application in one step",
    responses=_responses(403, 413, 422),
)
async def submit_application(
    request: Request,
    principal: FirmUser,
    idempotency_key: IdempotencyKeyHeader,
    content: Annotated[ApplicationContent, Body(openapi_examples=_CONTENT_EXAMPLES)],
) -> Response:
    """Create and submit an application at once, for clients that build it in one go.

    The record and its `application.submitted` event are written in one transaction. With the
    same `Idempotency-Key` and body, a retry returns the first response and submits nothing.
    """
    content_json = content.model_dump(mode="json")
    try:
        check_submission(content_json)
    except InvalidContent as exc:
        raise _invalid(exc) from None
    request_fingerprint = fingerprint("submit", "", content.model_dump_json().encode())
    service = _service(request)
    now = utcnow()
    record = _new_record(principal, content_json, now)
    try:
        async with service.uow() as uow:
            entry = _stage_submission(
                uow, record, content, content_json, principal=principal, now=now
            )
            _stage_key(
                uow,
                principal,
                idempotency_key,
                operation="submit",
                request_fingerprint=request_fingerprint,
                application_id=record.id,
                status_code=201,
                now=now,
            )
            await uow.commit()
    except IntegrityError as exc:
        return await _replay_after_conflict(
            service, principal, idempotency_key, request_fingerprint, exc
        )
    return json_response(to_view(record, [entry], principal), 201, _location(record))


@router.post(
    "/{application_id}/submit",
    response_model=ApplicationView,
    summary="Submit a draft",
    responses=_responses(403, 404, 409, 413, 422),
)
async def submit_draft(
    request: Request,
    application_id: ApplicationId,
    principal: FirmUser,
    idempotency_key: IdempotencyKeyHeader,
    content: Annotated[
        ApplicationContent | None,
        Body(
            description=(
                "Optional: the complete content to submit, replacing the draft's. Without a "
                "body, the draft itself is submitted."
            ),
            openapi_examples=_CONTENT_EXAMPLES,
        ),
    ] = None,
) -> Response:
    """Submit the draft. It must be complete: a 422 lists every missing or invalid field.

    The record and its `application.submitted` event are written in one transaction. With the
    same `Idempotency-Key` and body, a retry returns the first response and submits nothing.
    """
    body = content.model_dump_json().encode() if content is not None else b""
    request_fingerprint = fingerprint("submit", application_id, body)
    service = _service(request)
    try:
        async with service.uow() as uow:
            record = await store.get_application(uow.session, application_id, principal, lock=True)
            if record.status != Status.DRAFT.value:
                replay = await _replay(uow.session, principal, idempotency_key, request_fingerprint)
                if replay is not None:
                    return replay
                _ensure(record, Action.SUBMIT)
            try:
                if content is None:
                    content = complete_content(record.content)
                    content_json = content.model_dump(mode="json")
                else:
                    content_json = content.model_dump(mode="json")
                    check_submission(content_json)
            except InvalidContent as exc:
                raise _invalid(exc) from None
            now = utcnow()
            _stage_submission(uow, record, content, content_json, principal=principal, now=now)
            entries = await _commit_with_key(
                uow, record, principal, idempotency_key, "submit", request_fingerprint, now
            )
    except IntegrityError as exc:
        return await _replay_after_conflict(
            service, principal, idempotency_key, request_fingerprint, exc
        )
    return json_response(to_view(record, entries, principal))


# --- routes: after submission --------------------------------------------------------------------


@router.post(
    "/{application_id}/withdraw",
    response_model=ApplicationView,
    summary="Withdraw an application",
    responses=_responses(403, 404, 409, 413, 422),
)
async def withdraw(
    request: Request,
    application_id: ApplicationId,
    principal: FirmUser,
    body: Annotated[
        WithdrawRequest,
        Body(openapi_examples={"withdraw": {"summary": "Withdraw", "value": WITHDRAW_EXAMPLE}}),
    ],
    idempotency_key: OptionalIdempotencyKeyHeader = None,
) -> Response:
    """Withdraw a submitted application, at any stage before it is closed.

    Emits `application.withdrawn`: the workflow stops, held zone space is released and an open
    award is cancelled. Drafts are deleted rather than withdrawn.
    """
    request_fingerprint = fingerprint("withdraw", application_id, body.model_dump_json().encode())
    service = _service(request)
    try:
        async with service.uow() as uow:
            record = await store.get_application(uow.session, application_id, principal, lock=True)
            if idempotency_key is not None and Status(record.status) is Status.WITHDRAWN:
                replay = await _replay(uow.session, principal, idempotency_key, request_fingerprint)
                if replay is not None:
                    return replay
            _ensure(record, Action.WITHDRAW)
            now = utcnow()
            payload = ApplicationWithdrawn(
                application_id=record.id,
                firm_id=record.firm_id,
                reason_code=WithdrawalReason.FIRM_REQUEST,
                reason=body.reason,
                withdrawn_at=now,
            )
            record.information_request = None
            _stage_event(
                uow,
                record,
                "application.withdrawn",
                payload,
                principal=principal,
                now=now,
                status=Status.WITHDRAWN,
                summary="Application withdrawn by the firm.",
                reasons=[body.reason],
            )
            entries = await _commit_with_key(
                uow, record, principal, idempotency_key, "withdraw", request_fingerprint, now
            )
    except IntegrityError as exc:
        return await _replay_after_conflict(
            service, principal, idempotency_key, request_fingerprint, exc
        )
    return json_response(to_view(record, entries, principal))


@router.post(
    "/{application_id}/amend",
    response_model=ApplicationView,
    summary="Amend an application while information is requested",
    responses=_responses(403, 404, 409, 413, 422),
)
async def amend(
    request: Request,
    application_id: ApplicationId,
    principal: FirmUser,
    body: Annotated[
        AmendRequest,
        Body(openapi_examples={"amend": {"summary": "Amend", "value": AMEND_EXAMPLE}}),
    ],
    idempotency_key: OptionalIdempotencyKeyHeader = None,
) -> Response:
    """Send a new revision of the application, answering the program's information request.

    Allowed only while the status is `information_requested` (409 otherwise). Emits
    `application.amended` with the changed fields; eligibility then assesses the new revision.
    """
    content = body.content
    content_json = content.model_dump(mode="json")
    try:
        check_submission(content_json)
    except InvalidContent as exc:
        raise _invalid(exc, ("content",)) from None
    request_fingerprint = fingerprint("amend", application_id, body.model_dump_json().encode())
    service = _service(request)
    try:
        async with service.uow() as uow:
            record = await store.get_application(uow.session, application_id, principal, lock=True)
            if idempotency_key is not None and record.status != Status.INFORMATION_REQUESTED:
                replay = await _replay(uow.session, principal, idempotency_key, request_fingerprint)
                if replay is not None:
                    return replay
            _ensure(record, Action.AMEND)
            changed = changed_fields(record.content, content_json)
            if not changed:
                raise _invalid(
                    InvalidContent(
                        "the amendment changes nothing",
                        [
                            FieldIssue(
                                (), "the content is identical to the current revision", "unchanged"
                            )
                        ],
                    ),
                    ("content",),
                )
            open_request = (
                InformationRequest.model_validate(record.information_request)
                if record.information_request
                else None
            )
            now = utcnow()
            submitted_at = record.submitted_at or now
            revision = record.revision + 1
            payload = ApplicationAmended(
                application_id=record.id,
                firm_id=record.firm_id,
                revision=revision,
                content=content,
                changed_fields=changed,
                reason=body.reason,
                in_response_to=open_request.request_id if open_request else None,
                submitted_at=submitted_at,
                amended_at=max(now, submitted_at),
            )
            record.revision = revision
            record.content = content_json
            record.information_request = None
            _stage_event(
                uow,
                record,
                "application.amended",
                payload,
                principal=principal,
                now=now,
                status=Status.SUBMITTED,
                summary=f"Application amended (revision {revision}): {', '.join(changed)}.",
                reasons=[body.reason],
                causation_id=open_request.event_id if open_request else None,
            )
            entries = await _commit_with_key(
                uow, record, principal, idempotency_key, "amend", request_fingerprint, now
            )
    except IntegrityError as exc:
        return await _replay_after_conflict(
            service, principal, idempotency_key, request_fingerprint, exc
        )
    return json_response(to_view(record, entries, principal))
