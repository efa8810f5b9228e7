"""The desk's HTTP API: the inbox, task detail, decisions, escalations and the registry.

Routes are thin: they check the caller, read through one unit of work (and, for registry
changes, commit it once), and leave every rule to :mod:`services.review.domain` or to the
workflow. A decision is never judged here: the projection may lag, so the workflow's validator
is the authority and its refusal comes back as a problem with the reason.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Annotated, Any, Final

import sqlalchemy as sa
from fastapi import APIRouter, Body, Depends, Header, Path, Query, Request, Response, Security
from fastapi.security import HTTPBearer
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from contracts.conflicts import conflicts, named
from contracts.envelope import utcnow
from contracts.v1.common import ReviewStage
from contracts.v1.desk import ReviewDecisionRequest, ReviewerProfile, ReviewerRole
from contracts.v1.review import ApplicationSummary
from services.kit.auth import Principal, Role, current_principal
from services.kit.errors import Conflict, Forbidden, NotFound, ValidationFailed
from services.kit.problems import PROBLEM_RESPONSES, Problem
from services.kit.runtime import Service
from services.review.domain import (
    TaskStatus,
    decision_request_id,
)
from services.review.models import ReviewerRecord, ReviewTask, identifiers_json
from services.review.schemas import (
    DECISION_EXAMPLES,
    REVIEWER_EXAMPLE,
    ApplicationOutcomeInfo,
    CancellationInfo,
    DecisionBody,
    DecisionInfo,
    DecisionResult,
    EscalationInfo,
    HistoryEntry,
    InformationRequestInfo,
    ReviewerList,
    ReviewerUpdate,
    ReviewerView,
    TaskDetail,
    TaskPage,
    TaskView,
)
from services.review.temporal import TemporalDesk

#: Roles that may read tasks at all; firms never see the desk.
STAFF: Final = frozenset({Role.REVIEWER, Role.SUPERVISOR, Role.AUDITOR, Role.ADMIN})
#: Roles that decide their own tasks.
DECIDERS: Final = frozenset({Role.REVIEWER, Role.SUPERVISOR})
#: Roles that see every task (read-only oversight).
OVERSEERS: Final = frozenset({Role.AUDITOR, Role.ADMIN})
#: Roles that may read the whole registry.
REGISTRY_READERS: Final = frozenset({Role.ADMIN, Role.AUDITOR, Role.SUPERVISOR})

# --- OpenAPI: authentication, errors, parameters -------------------------------------------------

bearer = HTTPBearer(
    auto_error=False,
    bearerFormat="JWT",
    scheme_name="bearer",
    description=(
        "A JWT signed by the program. Reviewers hold role `reviewer` and supervisors "
        "`supervisor`, with their registry id as `sub`; auditors (`auditor`) read; admins "
        "(`admin`) manage the registry. For development: "
        "`incentives token --role reviewer --user rev.novak@gaip.example`."
    ),
)

_503: dict[int | str, dict[str, Any]] = {
    503: {
        "model": Problem,
        "content": {"application/problem+json": {}},
        "description": "Temporal unreachable or the workflow did not answer in time; retry",
    },
    502: {
        "model": Problem,
        "content": {"application/problem+json": {}},
        "description": "The workflow failed the update for an unexpected reason",
    },
}


def _responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    out: dict[int | str, dict[str, Any]] = {
        401: PROBLEM_RESPONSES[401],
        403: PROBLEM_RESPONSES[403],
    }
    for status in statuses:
        out.update(_503 if status == 503 else {status: PROBLEM_RESPONSES[status]})
    return out


TaskId = Annotated[
    str,
    Path(
        description="The task id, from the inbox.",
        examples=["task_7c1f0e9a2b"],
        max_length=100,
        pattern=r"^\S+$",
    ),
]
ReviewerId = Annotated[
    str,
    Path(
        description="The reviewer's user id (the `sub` of their token).",
        examples=["rev.novak@gaip.example"],
        max_length=100,
        pattern=r"^\S+$",
    ),
]
Limit = Annotated[
    int,
    Query(ge=1, le=200, description="Page size.", examples=[50]),
]
Offset = Annotated[
    int,
    Query(ge=0, le=100_000, description="How many matching tasks to skip.", examples=[0]),
]
IdempotencyKey = Annotated[
    str,
    Header(
        alias="Idempotency-Key",
        description=(
            "A unique key per intended decision (a UUID is a good choice), 8 to 200 printable "
            "ASCII characters. Retrying with the same key reaches the workflow as the same "
            "request and returns the first outcome instead of deciding twice. Keys are scoped "
            "to you and the task."
        ),
        examples=["5b0f6a4e-2c1d-4c8e-9e7a-1f2d3c4b5a69"],
        min_length=8,
        max_length=200,
        pattern=r"^[\x21-\x7e]+$",
    ),
]


async def _caller(request: Request) -> Principal:
    """The verified caller, or a 401 problem (checked on the event loop, not a thread)."""
    return current_principal(request)


Caller = Annotated[Principal, Depends(_caller)]


def _require(principal: Principal, allowed: frozenset[Role], action: str) -> None:
    if principal.role not in allowed:
        raise Forbidden(
            f"role {principal.role} may not {action}; allowed: "
            + ", ".join(sorted(str(r) for r in allowed))
        )


def _service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


@asynccontextmanager
async def _reading(request: Request) -> AsyncIterator[AsyncSession]:
    """A session for reads only; what it loaded stays usable after it.

    The unit of work rolls back an uncommitted session on exit, which would expire every
    loaded row; detaching them first keeps their values for the response.
    """
    async with _service(request).uow() as uow:
        try:
            yield uow.session
        finally:
            uow.session.expunge_all()


# --- views ---------------------------------------------------------------------------------------


def task_view(task: ReviewTask, now: datetime) -> dict[str, Any]:
    """The fields of :class:`TaskView` for a projected task (which must be assigned)."""
    facts = task.facts()
    assert task.summary is not None
    assert task.assigned_at is not None
    assert task.due_at is not None
    escalation = None
    if facts.escalation_counts and task.escalated_at is not None:
        escalation = EscalationInfo(
            supervisor_id=task.escalated_to,
            reason=task.escalation_reason or "",
            escalated_at=task.escalated_at,
        )
    decision = None
    if facts.decision_counts and task.decided_at is not None and task.decision is not None:
        decision = DecisionInfo(
            decision=task.decision, comment=task.comment or "", decided_at=task.decided_at
        )
    information_request = None
    if facts.information_request_counts and task.information_request is not None:
        info = task.information_request
        information_request = InformationRequestInfo(
            request_id=info["request_id"],
            fields=info.get("fields", []),
            questions=info.get("questions", []),
            requested_at=info["requested_at"],
            respond_by=info["respond_by"],
        )
    cancellation = None
    if facts.cancellation_counts and task.cancelled_at is not None:
        cancellation = CancellationInfo(
            reason=task.cancel_reason or "", cancelled_at=task.cancelled_at
        )
    outcome = None
    if task.closed_at is not None and task.application_outcome is not None:
        outcome = ApplicationOutcomeInfo(
            outcome=task.application_outcome,
            reasons=list(task.outcome_reasons),
            ended_at=task.closed_at,
            ended_by=task.outcome_by,
        )
    return {
        "task_id": task.task_id,
        "application_id": task.application_id,
        "stage": ReviewStage(task.stage),
        "reviewer_id": task.reviewer_id,
        "status": facts.status,
        "sla_state": facts.sla_state(now),
        "summary": ApplicationSummary.model_validate(task.summary),
        "assigned_at": task.assigned_at,
        "due_at": task.due_at,
        "reminded_at": task.reminded_at if facts.reminder_counts else None,
        "quorum": task.quorum,
        "escalation": escalation,
        "decision": decision,
        "information_request": information_request,
        "cancellation": cancellation,
        "application_outcome": outcome,
    }


def _can_see(task: ReviewTask, principal: Principal) -> bool:
    """Reviewers see their own tasks, supervisors also escalated ones, overseers all."""
    if principal.role in OVERSEERS or task.reviewer_id == principal.sub:
        return True
    return principal.role is Role.SUPERVISOR and task.facts().escalation_counts


async def _page(request: Request, conditions: list[Any], limit: int, offset: int) -> TaskPage:
    now = utcnow()
    where = [col(ReviewTask.assigned_at).is_not(None), *conditions]
    async with _reading(request) as session:
        total = (
            await session.exec(select(sa.func.count()).select_from(ReviewTask).where(*where))
        ).one()
        rows = (
            await session.exec(
                select(ReviewTask)
                .where(*where)
                .order_by(col(ReviewTask.due_at), col(ReviewTask.task_id))
                .offset(offset)
                .limit(limit)
            )
        ).all()
    return TaskPage(
        items=[TaskView(**task_view(row, now)) for row in rows], total=int(total), offset=offset
    )


# --- the inbox and tasks -------------------------------------------------------------------------

router = APIRouter(dependencies=[Security(bearer)])


@router.get(
    "/v1/inbox",
    tags=["inbox"],
    summary="My tasks",
    response_model=TaskPage,
    responses=_responses(422),
)
async def inbox(
    request: Request,
    principal: Caller,
    status: Annotated[
        list[TaskStatus] | None,
        Query(
            description="Only tasks in these statuses (repeat the parameter); default: all.",
            examples=[["open"]],
        ),
    ] = None,
    stage: Annotated[
        list[ReviewStage] | None,
        Query(
            description="Only tasks of these stages (repeat the parameter); default: all.",
            examples=[["technical", "security"]],
        ),
    ] = None,
    reviewer_id: Annotated[
        str | None,
        Query(
            max_length=100,
            description=(
                "Whose inbox. Reviewers and supervisors see only their own (leave it out or give "
                "your own id); auditors and admins see every reviewer's tasks unless they name one."
            ),
            examples=["rev.novak@gaip.example"],
        ),
    ] = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> TaskPage:
    """The tasks assigned to me, soonest due first, each with the application summary, stage,
    due date, SLA state and status.

    Built from review events: a task assigned a moment ago may take a moment to appear.
    """
    _require(principal, STAFF, "read review tasks")
    conditions: list[Any] = []
    if principal.role in OVERSEERS:
        if reviewer_id is not None:
            conditions.append(col(ReviewTask.reviewer_id) == reviewer_id)
    else:
        if reviewer_id is not None and reviewer_id != principal.sub:
            raise Forbidden("reviewers see only their own inbox")
        conditions.append(col(ReviewTask.reviewer_id) == principal.sub)
    if status:
        conditions.append(col(ReviewTask.status).in_([s.value for s in status]))
    if stage:
        conditions.append(col(ReviewTask.stage).in_([s.value for s in stage]))
    return await _page(request, conditions, limit, offset)


@router.get(
    "/v1/tasks/{task_id}",
    tags=["tasks"],
    summary="Task detail",
    response_model=TaskDetail,
    responses=_responses(404, 422),
)
async def task_detail(request: Request, principal: Caller, task_id: TaskId) -> TaskDetail:
    """One task with its history. Another reviewer's task is answered 404."""
    _require(principal, STAFF, "read review tasks")
    task = await _visible_task(request, principal, task_id)
    history = [HistoryEntry.model_validate(entry) for entry in task.history]
    return TaskDetail(**task_view(task, utcnow()), history=history)


async def _visible_task(request: Request, principal: Principal, task_id: str) -> ReviewTask:
    async with _reading(request) as session:
        task = await session.get(ReviewTask, task_id)
    if task is None or task.assigned_at is None or not _can_see(task, principal):
        # The same answer for "no such task" and "not yours": ids do not leak.
        raise NotFound(f"task {task_id} not found")
    return task


@router.post(
    "/v1/tasks/{task_id}/decision",
    tags=["tasks"],
    summary="Decide my task",
    response_model=DecisionResult,
    responses=_responses(404, 409, 422, 503),
)
async def decide(
    request: Request,
    principal: Caller,
    task_id: TaskId,
    idempotency_key: IdempotencyKey,
    body: Annotated[DecisionBody, Body(openapi_examples=DECISION_EXAMPLES)],
) -> DecisionResult:
    """Approve, reject or request information, with a comment.

    The decision goes to the application's workflow as the `decide` update; its validator has
    the last word. A refusal is a problem whose `reason` says why:

    | status | reason |
    | --- | --- |
    | 403 | `wrong_role`, `not_assigned`, `conflict_of_interest`, `separation_of_duties` |
    | 409 | `stage_not_open`, `duplicate_decision`, `application_closed` |
    | 422 | `invalid_request` (and malformed bodies) |
    | 404 | the task is not yours, or no workflow runs for the application |
    | 503 | Temporal is unreachable or did not answer in time: retry with the same key |

    A retry with the same `Idempotency-Key` returns the first outcome; the same key with a
    different decision is refused with 422.
    """
    _require(principal, DECIDERS, "decide review tasks")
    task = await _visible_task(request, principal, task_id)
    if task.reviewer_id != principal.sub:
        # A supervisor looking at someone else's escalated task: visible, not theirs to decide.
        raise Forbidden(f"task {task_id} is assigned to {task.reviewer_id}, not to you")
    async with _reading(request) as session:
        profile = await session.get(ReviewerRecord, principal.sub)
    roles = [ReviewerRole(r) for r in profile.roles] if profile is not None else []
    decision_request = ReviewDecisionRequest(
        request_id=decision_request_id(task.task_id, principal.sub, idempotency_key),
        task_id=task.task_id,
        stage=ReviewStage(task.stage),
        reviewer_id=principal.sub,
        token_roles=roles,
        decision=body.decision,
        comment=body.comment,
        requested_fields=list(body.requested_fields),
    )
    desk: TemporalDesk = request.app.state.desk
    outcome = await desk.decide(task.application_id, decision_request)
    if outcome.decision != body.decision:
        raise _key_reused(idempotency_key, outcome.decision.value)
    return DecisionResult(
        task_id=task.task_id,
        application_id=task.application_id,
        request_id=outcome.request_id,
        stage=outcome.stage,
        decision=outcome.decision,
        stage_closed=outcome.stage_closed,
        application_phase=outcome.application_phase,
    )


def _key_reused(key: str, recorded: str) -> ValidationFailed:
    return ValidationFailed(
        f"Idempotency-Key {key} was already used for a different decision ({recorded}); "
        "use a new key for a new decision",
        extensions={
            "errors": [
                {
                    "header": "Idempotency-Key",
                    "field": "Idempotency-Key",
                    "message": "already used for a different decision",
                    "type": "idempotency_key_reused",
                }
            ]
        },
    )


@router.get(
    "/v1/supervisor/escalations",
    tags=["supervisor"],
    summary="Escalated tasks",
    response_model=TaskPage,
    responses=_responses(422),
)
async def escalations(
    request: Request,
    principal: Caller,
    status: Annotated[
        list[TaskStatus] | None,
        Query(
            description="Only tasks in these statuses (repeat the parameter); default: `open`.",
            examples=[["open"]],
        ),
    ] = None,
    mine: Annotated[
        bool,
        Query(
            description=(
                "Only escalations addressed to me or to the supervisors' shared queue "
                "(supervisors only)."
            ),
            examples=[False],
        ),
    ] = False,
    limit: Limit = 50,
    offset: Offset = 0,
) -> TaskPage:
    """Tasks escalated to a supervisor because their SLA ran out, soonest due first.

    For supervisors; auditors and admins may read it too.
    """
    _require(
        principal,
        frozenset({Role.SUPERVISOR, *OVERSEERS}),
        "read escalations",
    )
    conditions: list[Any] = [
        col(ReviewTask.escalated_at).is_not(None),
        # An escalation from an earlier round (before a re-assignment) no longer counts.
        col(ReviewTask.escalated_at) >= col(ReviewTask.assigned_at),
        col(ReviewTask.status).in_([s.value for s in (status or [TaskStatus.OPEN])]),
    ]
    if mine and principal.role is Role.SUPERVISOR:
        conditions.append(
            sa.or_(
                col(ReviewTask.escalated_to) == principal.sub,
                col(ReviewTask.escalated_to).is_(None),
            )
        )
    return await _page(request, conditions, limit, offset)


# --- the reviewer registry -----------------------------------------------------------------------

registry_router = APIRouter(
    prefix="/v1/registry/reviewers", tags=["registry"], dependencies=[Security(bearer)]
)


def reviewer_view(record: ReviewerRecord) -> ReviewerView:
    """The API view of a registry row."""
    return ReviewerView(
        reviewer_id=record.reviewer_id,
        name=record.name,
        roles=[ReviewerRole(r) for r in record.roles],
        affiliations=list(record.affiliations),
        ownership_interests=list(record.ownership_interests),
        declared_identifiers=record.identifiers(),
        active=record.active,
        created_at=record.created_at,
        updated_at=record.updated_at,
        updated_by=record.updated_by,
    )


def reviewer_profile(record: ReviewerRecord) -> ReviewerProfile:
    """The contract profile of a registry row (what the workflow snapshots)."""
    return ReviewerProfile(
        reviewer_id=record.reviewer_id,
        name=record.name,
        roles=[ReviewerRole(r) for r in record.roles],
        affiliations=list(record.affiliations),
        ownership_interests=list(record.ownership_interests),
        declared_identifiers=record.identifiers(),
        active=record.active,
    )


@registry_router.get(
    "", summary="List reviewers", response_model=ReviewerList, responses=_responses(422)
)
async def list_reviewers(
    request: Request,
    principal: Caller,
    role: Annotated[
        ReviewerRole | None,
        Query(description="Only reviewers holding this role.", examples=["committee"]),
    ] = None,
    active: Annotated[
        bool | None,
        Query(description="Only active (true) or inactive (false) reviewers.", examples=[True]),
    ] = None,
) -> ReviewerList:
    """The registry, sorted by reviewer id. Admins, auditors and supervisors."""
    _require(principal, REGISTRY_READERS, "read the reviewer registry")
    async with _reading(request) as session:
        rows = (
            await session.exec(select(ReviewerRecord).order_by(col(ReviewerRecord.reviewer_id)))
        ).all()
    items = [
        reviewer_view(r)
        for r in rows
        if (role is None or role.value in r.roles) and (active is None or r.active == active)
    ]
    return ReviewerList(items=items)


@registry_router.get(
    "/{reviewer_id}",
    summary="Get a reviewer",
    response_model=ReviewerView,
    responses=_responses(404, 422),
)
async def get_reviewer(
    request: Request, principal: Caller, reviewer_id: ReviewerId
) -> ReviewerView:
    """One registry entry. Admins, auditors and supervisors; a reviewer may read their own."""
    if principal.sub != reviewer_id:
        _require(principal, REGISTRY_READERS, "read other reviewers' registry entries")
    else:
        _require(principal, STAFF, "read the reviewer registry")
    async with _reading(request) as session:
        record = await session.get(ReviewerRecord, reviewer_id)
    if record is None:
        raise NotFound(f"reviewer {reviewer_id} not found")
    return reviewer_view(record)


@registry_router.post(
    "",
    summary="Add a reviewer",
    status_code=201,
    response_model=ReviewerView,
    responses=_responses(409, 422),
)
async def create_reviewer(
    request: Request,
    response: Response,
    principal: Caller,
    body: Annotated[
        ReviewerProfile,
        Body(
            openapi_examples={
                "reviewer": {
                    "summary": "A technical and committee reviewer",
                    "value": REVIEWER_EXAMPLE,
                }
            }
        ),
    ],
) -> ReviewerView:
    """Add a reviewer (admins only). 409 if the id is taken."""
    _require(principal, frozenset({Role.ADMIN}), "change the reviewer registry")
    now = utcnow()
    async with _service(request).uow() as uow:
        if await uow.session.get(ReviewerRecord, body.reviewer_id) is not None:
            raise Conflict(f"reviewer {body.reviewer_id} already exists; use PUT to change it")
        record = _record_from(body, created_at=now, updated_by=principal.sub)
        uow.session.add(record)
        await uow.commit()
    response.headers["Location"] = f"/v1/registry/reviewers/{body.reviewer_id}"
    return reviewer_view(record)


@registry_router.put(
    "/{reviewer_id}",
    summary="Replace a reviewer's entry",
    response_model=ReviewerView,
    responses=_responses(404, 422),
)
async def replace_reviewer(
    request: Request,
    principal: Caller,
    reviewer_id: ReviewerId,
    body: ReviewerUpdate,
) -> ReviewerView:
    """Replace roles, affiliations, ownership interests, name and active flag (admins only).

    Tasks already assigned keep the profile the workflow snapshotted at assignment.
    """
    _require(principal, frozenset({Role.ADMIN}), "change the reviewer registry")
    async with _service(request).uow() as uow:
        record = await uow.session.get(ReviewerRecord, reviewer_id)
        if record is None:
            raise NotFound(f"reviewer {reviewer_id} not found")
        profile = body.profile(reviewer_id)
        record.name = profile.name
        record.roles = [r.value for r in profile.roles]
        record.affiliations = list(profile.affiliations)
        record.ownership_interests = list(profile.ownership_interests)
        record.declared_identifiers = identifiers_json(profile)
        record.active = profile.active
        record.updated_at = utcnow()
        record.updated_by = principal.sub
        uow.session.add(record)
        await uow.commit()
    return reviewer_view(record)


@registry_router.delete(
    "/{reviewer_id}",
    summary="Remove a reviewer",
    status_code=204,
    response_class=Response,
    responses=_responses(404, 422),
)
async def delete_reviewer(request: Request, principal: Caller, reviewer_id: ReviewerId) -> Response:
    """Remove a reviewer (admins only). To keep the entry but stop new tasks, set `active`
    to false instead."""
    _require(principal, frozenset({Role.ADMIN}), "change the reviewer registry")
    async with _service(request).uow() as uow:
        record = await uow.session.get(ReviewerRecord, reviewer_id)
        if record is None:
            raise NotFound(f"reviewer {reviewer_id} not found")
        await uow.session.delete(record)
        await uow.commit()
    return Response(status_code=204)


def _record_from(
    profile: ReviewerProfile, *, created_at: datetime, updated_by: str
) -> ReviewerRecord:
    return ReviewerRecord(
        reviewer_id=profile.reviewer_id,
        name=profile.name,
        roles=[r.value for r in profile.roles],
        affiliations=list(profile.affiliations),
        ownership_interests=list(profile.ownership_interests),
        declared_identifiers=identifiers_json(profile),
        active=profile.active,
        created_at=created_at,
        updated_at=created_at,
        updated_by=updated_by,
    )


# --- internal: the workflow's candidates ---------------------------------------------------------

internal_router = APIRouter(
    prefix="/internal/v1", tags=["internal"], dependencies=[Security(bearer)]
)


@internal_router.get(
    "/candidates",
    summary="Candidate reviewers for a stage",
    response_model=list[ReviewerProfile],
    responses=_responses(422),
)
async def candidates(
    request: Request,
    principal: Caller,
    stage: Annotated[
        ReviewerRole,
        Query(
            description=(
                "The stage to staff (reviewers holding its role), or `supervisor` for the "
                "supervisors an overdue task can be escalated to."
            ),
            examples=["technical", "supervisor"],
        ),
    ],
    organisation: Annotated[
        list[str] | None,
        Query(
            max_length=50,
            description=(
                "Optional: the firm's legal name and its parent companies. Reviewers declaring "
                "an affiliation or ownership interest in any of them are left out."
            ),
            examples=[["Acme Vision AI GmbH", "Acme Holdings SE"]],
        ),
    ] = None,
) -> list[ReviewerProfile]:
    """Active reviewers holding the stage's role (or supervisors), sorted by reviewer id.

    Called by the workflow's assignment and escalation steps with an admin token
    (`system:workflows`); the workflow keeps the profiles as the snapshot its conflict checks
    use.
    """
    _require(principal, frozenset({Role.ADMIN}), "list candidate reviewers")
    role = stage
    async with _reading(request) as session:
        rows = (
            await session.exec(
                select(ReviewerRecord)
                .where(col(ReviewerRecord.active).is_(True))
                .order_by(col(ReviewerRecord.reviewer_id))
            )
        ).all()
    profiles = [reviewer_profile(r) for r in rows if role.value in r.roles]
    if organisation:
        profiles = [p for p in profiles if not conflicts(p, named(organisation))]
    return profiles
