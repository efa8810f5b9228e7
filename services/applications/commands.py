"""The firm's use cases: create, edit, delete, submit, withdraw and amend an application.

Each command runs in one unit of work: it checks the caller's right and the application's
status (the domain's rules), changes the record, stages its timeline entry, its outbox event
and its idempotency key, and commits once. Commands know nothing of HTTP: they take a unit of
work factory, the caller and the decoded input, and return an :class:`Outcome` or raise one of
the kit's errors, which the routes (and tests) map as they need.

Idempotency: a keyed command inserts its key with the state change. A retry with the same key
and input returns the first outcome (``replayed``); the same key with other input is refused
(422). Two concurrent uses of a key serialise on its unique index: the loser's commit fails and
it replays what the winner committed.
"""

from __future__ import annotations

import functools
import hashlib
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import sqlalchemy as sa
from pydantic import BaseModel
from sqlalchemy.exc import IntegrityError
from sqlmodel import SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

from contracts import catalog
from contracts.envelope import Actor, utcnow
from contracts.status import Status
from contracts.topics import topic_for_type
from contracts.v1.applications import (
    ApplicationAmended,
    ApplicationCancelled,
    ApplicationContent,
    ApplicationSubmitted,
    ApplicationWithdrawn,
)
from contracts.v1.common import WithdrawalReason
from services.applications import awards, store
from services.applications.domain import (
    CANCELLABLE,
    Action,
    ActionNotAllowed,
    FieldIssue,
    InformationRequest,
    InvalidContent,
    changed_fields,
    check_submission,
    complete_content,
    content_issues,
    ensure_allowed,
    merge_patch,
)
from services.applications.models import ApplicationRecord, IdempotencyKey, TimelineEntry
from services.applications.schemas import AmendRequest, CancelRequest, WithdrawRequest
from services.kit.auth import Principal
from services.kit.errors import Conflict, ValidationFailed
from services.kit.http import IDEMPOTENCY_KEY_HEADER
from services.kit.problems import field_errors
from services.kit.uow import UnitOfWork, UnitOfWorkFactory

#: The ``producer`` of this service's envelopes.
PRODUCER: Final = "applications"
#: Where this service's events go.
EVENTS_TOPIC: Final = topic_for_type("application.submitted").name


@dataclass(frozen=True)
class Outcome:
    """What a command left: the application, its timeline, and how to answer."""

    record: ApplicationRecord
    timeline: list[TimelineEntry]
    #: 201 for a new application, 200 otherwise; a replay repeats the first answer's.
    status_code: int = 200
    #: Whether this is the stored outcome of an earlier request with the same key.
    replayed: bool = False


# --- errors --------------------------------------------------------------------------------------


def invalid(exc: InvalidContent, prefix: tuple[str, ...] = ()) -> ValidationFailed:
    """The 422 for content issues, each pointing into the body (under ``prefix``)."""
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
        raise invalid(InvalidContent(f"the draft has {len(issues)} invalid field(s)", issues))


def _ensure(record: ApplicationRecord, action: Action) -> None:
    try:
        ensure_allowed(Status(record.status), action)
    except ActionNotAllowed as exc:
        raise Conflict(
            str(exc),
            extensions={
                "current_status": exc.status.value,
                "allowed_actions": [action.value for action in exc.allowed],
            },
        ) from None


def _key_reused(stored: IdempotencyKey) -> ValidationFailed:
    message = (
        f"{IDEMPOTENCY_KEY_HEADER} was already used for a different request ({stored.operation} "
        f"of {stored.application_id}); use a new key for a new operation"
    )
    return ValidationFailed(
        message,
        extensions={
            "errors": [
                {
                    "header": IDEMPOTENCY_KEY_HEADER,
                    "field": IDEMPOTENCY_KEY_HEADER,
                    "message": message,
                    "type": "idempotency_key_reused",
                }
            ]
        },
    )


# --- idempotency ---------------------------------------------------------------------------------


def _key_scope(principal: Principal) -> str:
    """Whose keys a key is unique among: the firm's, or one staff member's (``admin:<sub>``;
    firm ids never hold a colon)."""
    if principal.firm_id is not None:
        return principal.firm_id
    return f"{principal.role.value}:{principal.sub}"[:100]


def fingerprint(operation: str, target: str, body: bytes) -> str:
    """What a keyed request asked for: its operation, its target and its canonical body."""
    return hashlib.sha256(b"\x1f".join((operation.encode(), target.encode(), body))).hexdigest()


async def _replay(
    session: AsyncSession, principal: Principal, key: str | None, request_fingerprint: str
) -> Outcome | None:
    """The first outcome if ``key`` was used for this very request; 422 if for another.

    ``None`` when there is no key or it has not been used.
    """
    if key is None:
        return None
    stored = await store.idempotency_key(session, _key_scope(principal), key)
    if stored is None:
        return None
    if stored.fingerprint != request_fingerprint:
        raise _key_reused(stored)
    record = await store.get_application(session, stored.application_id, principal)
    entries = await store.timeline(session, record.id)
    # The unit of work rolls back when it ends without a commit, which would expire what it
    # loaded: detached, the rows keep their values for the answer.
    for row in (record, *entries):
        session.expunge(row)
    return Outcome(record, entries, stored.status_code, replayed=True)


async def _replay_after_conflict(
    uow_factory: UnitOfWorkFactory,
    principal: Principal,
    key: str | None,
    request_fingerprint: str,
    error: IntegrityError,
) -> Outcome:
    """After a commit hit a unique index: a concurrent or earlier use of the same key.

    Anything else (no key, or the key is free after all) is a genuine error and is re-raised.
    """
    async with uow_factory() as uow:
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
    # Inserted with the state change: a concurrent request with the same key waits on this
    # row's unique index, then fails its commit and replays what this one committed.
    uow.session.add(
        IdempotencyKey(
            firm_id=_key_scope(principal),
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
) -> Outcome:
    """Stage the idempotency key (answer 200), read the timeline, commit."""
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
    return Outcome(record, entries)


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
    add: bool = True,
) -> TimelineEntry:
    """Stage the event in the outbox and its timeline entry, and move the record to ``status``.

    ``add=False`` leaves the record and the entry out of the session: the caller writes them.
    """
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
    if add:
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
    add: bool = True,
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
        add=add,
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


# --- drafts --------------------------------------------------------------------------------------


async def create_draft(
    uow_factory: UnitOfWorkFactory, principal: Principal, content: dict[str, Any]
) -> Outcome:
    """A new draft holding ``content`` (any part may be missing; what is given is checked)."""
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
    async with uow_factory() as uow:
        uow.session.add(record)
        uow.session.add(entry)
        await uow.commit()
    return Outcome(record, [entry], 201)


async def edit_draft(
    uow_factory: UnitOfWorkFactory,
    principal: Principal,
    application_id: str,
    *,
    patch: dict[str, Any] | None = None,
    replacement: dict[str, Any] | None = None,
) -> Outcome:
    """Replace the draft's content, or merge ``patch`` into it (RFC 7396). 409 once submitted."""
    async with uow_factory() as uow:
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
    return Outcome(record, entries)


async def delete_draft(
    uow_factory: UnitOfWorkFactory, principal: Principal, application_id: str
) -> None:
    """Delete a draft and its timeline. Submitted applications are withdrawn instead (409)."""
    async with uow_factory() as uow:
        record = await store.get_application(uow.session, application_id, principal, lock=True)
        _ensure(record, Action.DELETE)
        for entry in await store.timeline(uow.session, application_id):
            await uow.session.delete(entry)
        await uow.session.delete(record)
        await uow.commit()


# --- submission ----------------------------------------------------------------------------------


async def submit_new(
    uow_factory: UnitOfWorkFactory,
    principal: Principal,
    content: ApplicationContent,
    key: str,
) -> Outcome:
    """Create and submit an application at once: the record and its event in one commit.

    The hot path of the API: the record, its timeline entry and the idempotency key are
    written with Core (one statement on PostgreSQL), not through the session, and the outbox
    row with the commit. A key already used raises on its unique index, as through the ORM.
    """
    content_json = content.model_dump(mode="json")
    try:
        check_submission(content_json)
    except InvalidContent as exc:
        raise invalid(exc) from None
    request_fingerprint = fingerprint("submit", "", content.model_dump_json().encode())
    now = utcnow()
    record = _new_record(principal, content_json, now)
    assert principal.firm_id is not None
    key_row = IdempotencyKey(
        firm_id=principal.firm_id,
        key=key,
        operation="submit",
        fingerprint=request_fingerprint,
        application_id=record.id,
        status_code=201,
        created_at=now,
    )
    try:
        async with uow_factory() as uow:
            entry = _stage_submission(
                uow, record, content, content_json, principal=principal, now=now, add=False
            )
            await _insert_rows(uow, record, entry, key_row)
            await uow.commit()
    except IntegrityError as exc:
        return await _replay_after_conflict(uow_factory, principal, key, request_fingerprint, exc)
    return Outcome(record, [entry], 201)


def _columns(row: SQLModel) -> dict[str, Any]:
    """A table model's column values as Core binds them (an unset generated key left out)."""
    table: sa.Table = row.__table__  # type: ignore[attr-defined]
    values = {column.name: getattr(row, column.name) for column in table.columns}
    for column in table.primary_key.columns:
        if values[column.name] is None:
            del values[column.name]
    return values


def _prefixed(table: sa.Table, prefix: str, skip: frozenset[str] = frozenset()) -> dict[str, Any]:
    return {
        column.name: sa.bindparam(f"{prefix}{column.name}", type_=column.type)
        for column in table.columns
        if column.name not in skip
    }


#: The timeline's generated id is not bound.
_TIMELINE_SKIP: Final = frozenset({"id"})


@functools.cache
def _submission_statement() -> sa.Insert:
    """PostgreSQL: the record, its timeline entry and the key in one statement (two CTEs).

    Built once, so its text and its prepared statement are reused for every submission.
    """
    applications: sa.Table = ApplicationRecord.__table__  # type: ignore[attr-defined]
    timeline: sa.Table = TimelineEntry.__table__  # type: ignore[attr-defined]
    keys: sa.Table = IdempotencyKey.__table__  # type: ignore[attr-defined]
    new_application = sa.insert(applications).values(_prefixed(applications, "a_")).cte("a")
    new_key = sa.insert(keys).values(_prefixed(keys, "k_")).cte("k")
    return (
        sa.insert(timeline)
        .values(_prefixed(timeline, "t_", _TIMELINE_SKIP))
        .add_cte(new_application, new_key)
    )


async def _insert_rows(
    uow: UnitOfWork, record: ApplicationRecord, entry: TimelineEntry, key_row: IdempotencyKey
) -> None:
    connection = await uow.session.connection()
    rows = (_columns(record), _columns(entry), _columns(key_row))
    if connection.dialect.name == "postgresql":
        params = {
            f"{prefix}{name}": value
            for prefix, row in zip(("a_", "t_", "k_"), rows, strict=True)
            for name, value in row.items()
        }
        await connection.execute(_submission_statement(), params)
        return
    # SQLite has no data-modifying CTEs: one Core insert per table, in the same transaction.
    for model, row in zip((record, entry, key_row), rows, strict=True):
        await connection.execute(sa.insert(model.__table__), row)  # type: ignore[attr-defined]


async def submit_draft(
    uow_factory: UnitOfWorkFactory,
    principal: Principal,
    application_id: str,
    key: str,
    content: ApplicationContent | None = None,
) -> Outcome:
    """Submit the draft (or ``content`` in its place). It must be complete: 422 otherwise."""
    body = content.model_dump_json().encode() if content is not None else b""
    request_fingerprint = fingerprint("submit", application_id, body)
    try:
        async with uow_factory() as uow:
            record = await store.get_application(uow.session, application_id, principal, lock=True)
            if record.status != Status.DRAFT.value:
                replay = await _replay(uow.session, principal, key, request_fingerprint)
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
                raise invalid(exc) from None
            now = utcnow()
            _stage_submission(uow, record, content, content_json, principal=principal, now=now)
            return await _commit_with_key(
                uow, record, principal, key, "submit", request_fingerprint, now
            )
    except IntegrityError as exc:
        return await _replay_after_conflict(uow_factory, principal, key, request_fingerprint, exc)


# --- after submission ----------------------------------------------------------------------------


async def withdraw(
    uow_factory: UnitOfWorkFactory,
    principal: Principal,
    application_id: str,
    body: WithdrawRequest,
    key: str | None = None,
) -> Outcome:
    """Withdraw a submitted application: emits ``application.withdrawn``."""
    request_fingerprint = fingerprint("withdraw", application_id, body.model_dump_json().encode())
    try:
        async with uow_factory() as uow:
            record = await store.get_application(uow.session, application_id, principal, lock=True)
            if Status(record.status) is Status.WITHDRAWN:
                replay = await _replay(uow.session, principal, key, request_fingerprint)
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
            return await _commit_with_key(
                uow, record, principal, key, "withdraw", request_fingerprint, now
            )
    except IntegrityError as exc:
        return await _replay_after_conflict(uow_factory, principal, key, request_fingerprint, exc)


async def cancel(
    uow_factory: UnitOfWorkFactory,
    principal: Principal,
    application_id: str,
    body: CancelRequest,
    key: str,
) -> Outcome:
    """An administrator cancels an approved application: emits ``application.cancelled``.

    The status stays until the workflow's compensation (``application.compensated``) closes it.
    """
    request_fingerprint = fingerprint("cancel", application_id, body.model_dump_json().encode())
    try:
        async with uow_factory() as uow:
            record = await store.get_application(uow.session, application_id, principal, lock=True)
            replay = await _replay(uow.session, principal, key, request_fingerprint)
            if replay is not None:
                return replay
            status = Status(record.status)
            if status not in CANCELLABLE:
                raise Conflict(
                    f"cannot cancel an application that is {status}: only an approved "
                    "application whose journey is still open can be cancelled",
                    extensions={"current_status": status.value},
                )
            now = utcnow()
            payload = ApplicationCancelled(
                application_id=record.id,
                firm_id=record.firm_id,
                reason=body.reason,
                cancelled_at=now,
            )
            _stage_event(
                uow,
                record,
                "application.cancelled",
                payload,
                principal=principal,
                now=now,
                status=status,
                summary="Cancellation by an administrator requested.",
                reasons=[body.reason],
            )
            return await _commit_with_key(
                uow, record, principal, key, "cancel", request_fingerprint, now
            )
    except IntegrityError as exc:
        return await _replay_after_conflict(uow_factory, principal, key, request_fingerprint, exc)


async def amend(
    uow_factory: UnitOfWorkFactory,
    principal: Principal,
    application_id: str,
    body: AmendRequest,
    key: str | None = None,
) -> Outcome:
    """A new revision answering an information request: emits ``application.amended``.

    Allowed only while information is requested (409 otherwise); an amendment that changes
    nothing is refused (422).
    """
    content = body.content
    content_json = content.model_dump(mode="json")
    try:
        check_submission(content_json)
    except InvalidContent as exc:
        raise invalid(exc, ("content",)) from None
    request_fingerprint = fingerprint("amend", application_id, body.model_dump_json().encode())
    try:
        async with uow_factory() as uow:
            record = await store.get_application(uow.session, application_id, principal, lock=True)
            if record.status != Status.INFORMATION_REQUESTED:
                replay = await _replay(uow.session, principal, key, request_fingerprint)
                if replay is not None:
                    return replay
            _ensure(record, Action.AMEND)
            changed = changed_fields(record.content, content_json)
            if not changed:
                raise invalid(
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
            return await _commit_with_key(
                uow, record, principal, key, "amend", request_fingerprint, now
            )
    except IntegrityError as exc:
        return await _replay_after_conflict(uow_factory, principal, key, request_fingerprint, exc)


#: A use case after the committee: checks the record, returns the event, its status and words.
AwardUseCase = Callable[[ApplicationRecord, datetime], tuple[str, BaseModel, Status, str]]


async def act_on_award(
    uow_factory: UnitOfWorkFactory,
    principal: Principal,
    application_id: str,
    key: str,
    operation: str,
    body: bytes,
    use_case: AwardUseCase,
) -> Outcome:
    """Answer the offer or report a milestone: the event, its timeline entry, the updated award
    view and the idempotency key in one unit of work; a retry with the key acts once."""
    request_fingerprint = fingerprint(operation, application_id, body)
    try:
        async with uow_factory() as uow:
            record = await store.get_application(uow.session, application_id, principal, lock=True)
            replay = await _replay(uow.session, principal, key, request_fingerprint)
            if replay is not None:
                return replay
            now = utcnow()
            message_type, payload, status, summary = use_case(record, now)
            record.award = awards.apply(record.award, payload, now, principal.sub)
            _stage_event(
                uow,
                record,
                message_type,
                payload,
                principal=principal,
                now=now,
                status=status,
                summary=summary,
                reasons=list(record.status_reasons) if status.value == record.status else [],
            )
            return await _commit_with_key(
                uow, record, principal, key, operation, request_fingerprint, now
            )
    except IntegrityError as exc:
        return await _replay_after_conflict(uow_factory, principal, key, request_fingerprint, exc)
