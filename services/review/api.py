"""The desk's HTTP API: the inbox, task detail, decisions, escalations and the registry.

Routes are thin: they check the caller, read or change through :mod:`services.review.store`,
and show through :mod:`services.review.views`; every rule is :mod:`services.review.domain`'s or
the workflow's. A decision is never judged here: the projection may lag, so the workflow's
validator is the authority and its refusal comes back as a problem with the reason.
"""

from __future__ import annotations

from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Body, Path, Query, Request, Response, Security
from sqlmodel import col

from contracts.envelope import utcnow
from contracts.v1.common import ReviewStage
from contracts.v1.desk import (
    ReviewDecisionRequest,
    ReviewerProfile,
    ReviewerRole,
    TaskReassigned,
    TaskReassignment,
)
from services.kit.auth import Principal, Role
from services.kit.errors import Forbidden, NotFound, ValidationFailed
from services.kit.http import (
    IDEMPOTENCY_KEY_HEADER,
    Caller,
    bearer_scheme,
    idempotency_key,
    location,
    problem_responses,
    require_role,
    success_headers,
)
from services.kit.uow import UnitOfWorkFactory
from services.review import store
from services.review.domain import TaskStatus, decision_request_id, reassignment_request_id
from services.review.models import ReviewTask
from services.review.schemas import (
    DECISION_EXAMPLES,
    REVIEWER_EXAMPLE,
    REVIEWER_ID_PATTERN,
    DecisionBody,
    DecisionResult,
    HistoryEntry,
    NewReviewer,
    ReassignBody,
    ReviewerChangeView,
    ReviewerHistory,
    ReviewerList,
    ReviewerUpdate,
    ReviewerView,
    TaskDetail,
    TaskPage,
    TaskView,
)
from services.review.temporal import TemporalDesk
from services.review.views import (
    DECIDERS,
    OVERSEERS,
    REGISTRY_READERS,
    STAFF,
    reviewer_profile,
    reviewer_view,
    task_view,
)

#: Where the registry lives.
REGISTRY_PREFIX = "/v1/registry/reviewers"

# --- OpenAPI: authentication, errors, parameters -------------------------------------------------

bearer = bearer_scheme(
    "A JWT signed by the program. Reviewers hold role `reviewer` and supervisors "
    "`supervisor`, with their registry id as `sub`; auditors (`auditor`) read; admins "
    "(`admin`) manage the registry. For development: "
    "`incentives token --role reviewer --user rev.novak@gaip.example`."
)

_DESCRIPTIONS = {
    503: "Temporal unreachable or the workflow did not answer in time; retry",
    502: "The workflow failed the update for an unexpected reason",
}


def _responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return problem_responses(403, *statuses, descriptions=_DESCRIPTIONS)


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
        description=(
            "The reviewer's user id (the `sub` of their token): 1 to 100 ASCII letters, digits "
            "and `. _ @ + : -`, starting with a letter or digit."
        ),
        examples=["rev.novak@gaip.example"],
        pattern=REVIEWER_ID_PATTERN,
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
    idempotency_key(
        "A unique key per intended decision (a UUID is a good choice), 8 to 200 printable "
        "ASCII characters. Retrying with the same key reaches the workflow as the same "
        "request and returns the first outcome instead of deciding twice. Keys are scoped "
        "to you and the task."
    ),
]


def _uow(request: Request) -> UnitOfWorkFactory:
    factory: UnitOfWorkFactory = request.app.state.service.uow
    return factory


async def _page(request: Request, conditions: list[Any], limit: int, offset: int) -> TaskPage:
    now = utcnow()
    rows, total = await store.task_page(_uow(request), conditions, limit, offset)
    return TaskPage(
        items=[TaskView(**task_view(row, now)) for row in rows], total=total, offset=offset
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
    require_role(principal, STAFF, "read review tasks")
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
    require_role(principal, STAFF, "read review tasks")
    task = await store.visible_task(_uow(request), principal, task_id)
    history = [HistoryEntry.model_validate(entry) for entry in task.history]
    return TaskDetail(**task_view(task, utcnow()), history=history)


@router.post(
    "/v1/tasks/{task_id}/decision",
    tags=["tasks"],
    summary="Decide my task",
    response_model=DecisionResult,
    responses=_responses(404, 409, 422, 502, 503),
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
    require_role(principal, DECIDERS, "decide review tasks")
    task = await store.visible_task(_uow(request), principal, task_id)
    if task.reviewer_id != principal.sub:
        # A supervisor looking at someone else's escalated task: visible, not theirs to decide
        # here (POST /v1/supervisor/tasks/{task_id}/decision decides it in the reviewer's place).
        raise Forbidden(f"task {task_id} is assigned to {task.reviewer_id}, not to you")
    return await _decide(request, principal, task, idempotency_key, body, in_place=False)


async def _decide(
    request: Request,
    principal: Principal,
    task: ReviewTask,
    idempotency_key: str,
    body: DecisionBody,
    *,
    in_place: bool,
) -> DecisionResult:
    """Send the decision to the workflow, whose validator judges it; a supervisor deciding
    ``in_place`` of the task's reviewer sends their registry profile with it."""
    profile = await store.reviewer(_uow(request), principal.sub)
    roles = [ReviewerRole(r) for r in profile.roles] if profile is not None else []
    if in_place and profile is None:
        raise Forbidden(f"{principal.sub} is not in the reviewer registry")
    decision_request = ReviewDecisionRequest(
        request_id=decision_request_id(task.task_id, principal.sub, idempotency_key),
        task_id=task.task_id,
        stage=ReviewStage(task.stage),
        reviewer_id=principal.sub,
        token_roles=roles,
        decision=body.decision,
        comment=body.comment,
        requested_fields=list(body.requested_fields),
        fast_track_declined=list(body.fast_track_declined),
        supervisor=reviewer_profile(profile) if in_place and profile is not None else None,
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
        f"{IDEMPOTENCY_KEY_HEADER} {key} was already used for a different decision ({recorded}); "
        "use a new key for a new decision",
        extensions={
            "errors": [
                {
                    "header": IDEMPOTENCY_KEY_HEADER,
                    "field": IDEMPOTENCY_KEY_HEADER,
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
    require_role(principal, {Role.SUPERVISOR, *OVERSEERS}, "read escalations")
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


@router.post(
    "/v1/supervisor/tasks/{task_id}/reassign",
    tags=["supervisor"],
    summary="Reassign an escalated task",
    response_model=TaskReassigned,
    responses=_responses(404, 409, 422, 502, 503),
)
async def reassign(
    request: Request,
    principal: Caller,
    task_id: TaskId,
    idempotency_key: IdempotencyKey,
    body: ReassignBody,
) -> TaskReassigned:
    """Give an escalated, undecided task to another reviewer (supervisors only).

    The task is cancelled and the reviewer gets a new one on the same stage, with a new due
    date. The workflow's validator has the last word, with the decisions' reasons: `wrong_role`
    (you are not a supervisor, or the reviewer lacks the stage's role or is inactive),
    `conflict_of_interest` and `separation_of_duties` (of the reviewer),
    `duplicate_decision` (the reviewer already holds a task of the stage), `stage_not_open`
    (the task was decided or cancelled meanwhile), `invalid_request` (the task is not
    escalated), `application_closed`. 422 when the reviewer is not in the registry.
    """
    require_role(principal, {Role.SUPERVISOR}, "reassign tasks")
    task = await store.visible_task(_uow(request), principal, task_id)
    supervisor = await store.reviewer(_uow(request), principal.sub)
    chosen = await store.reviewer(_uow(request), body.reviewer_id)
    if chosen is None:
        raise ValidationFailed(
            f"reviewer {body.reviewer_id} is not in the registry",
            extensions={
                "errors": [
                    {
                        "field": "reviewer_id",
                        "message": "not in the reviewer registry",
                        "type": "unknown_reviewer",
                    }
                ]
            },
        )
    reassignment = TaskReassignment(
        request_id=reassignment_request_id(task.task_id, principal.sub, idempotency_key),
        task_id=task.task_id,
        supervisor_id=principal.sub,
        supervisor_roles=[ReviewerRole(r) for r in supervisor.roles] if supervisor else [],
        reviewer=reviewer_profile(chosen),
        reason=body.reason,
    )
    desk: TemporalDesk = request.app.state.desk
    return await desk.reassign(task.application_id, reassignment)


@router.post(
    "/v1/supervisor/tasks/{task_id}/decision",
    tags=["supervisor"],
    summary="Decide an escalated task in its reviewer's place",
    response_model=DecisionResult,
    responses=_responses(404, 409, 422, 502, 503),
)
async def decide_escalated(
    request: Request,
    principal: Caller,
    task_id: TaskId,
    idempotency_key: IdempotencyKey,
    body: Annotated[DecisionBody, Body(openapi_examples=DECISION_EXAMPLES)],
) -> DecisionResult:
    """Approve, reject or request information on an escalated task of another reviewer
    (supervisors only), as `POST /v1/tasks/{task_id}/decision` does for one's own task.

    The supervisor stands in for the stage's role; the workflow's validator applies every
    other rule of a decision to the supervisor: `conflict_of_interest` (from the supervisor's
    registry entry), `separation_of_duties`, `duplicate_decision`, `stage_not_open`,
    `application_closed`; `invalid_request` when the task was not escalated, `wrong_role` when
    the registry does not list the caller as an active supervisor. The escalated task is
    cancelled and the decision recorded on a new task of the supervisor's, with the supervisor
    as its actor. On the supervisor's own task this is an ordinary decision.
    """
    require_role(principal, {Role.SUPERVISOR}, "decide escalated tasks")
    task = await store.visible_task(_uow(request), principal, task_id)
    in_place = task.reviewer_id != principal.sub
    return await _decide(request, principal, task, idempotency_key, body, in_place=in_place)


# --- the reviewer registry -----------------------------------------------------------------------

registry_router = APIRouter(
    prefix=REGISTRY_PREFIX, tags=["registry"], dependencies=[Security(bearer)]
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
    require_role(principal, REGISTRY_READERS, "read the reviewer registry")
    rows = await store.reviewers(_uow(request))
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
        require_role(principal, REGISTRY_READERS, "read other reviewers' registry entries")
    else:
        require_role(principal, STAFF, "read the reviewer registry")
    record = await store.reviewer(_uow(request), reviewer_id)
    if record is None:
        raise NotFound(f"reviewer {reviewer_id} not found")
    return reviewer_view(record)


@registry_router.get(
    "/{reviewer_id}/history",
    summary="A reviewer's registry history",
    response_model=ReviewerHistory,
    responses=_responses(404, 422),
)
async def reviewer_history(
    request: Request, principal: Caller, reviewer_id: ReviewerId
) -> ReviewerHistory:
    """Every version of the entry, oldest first, removals included: the registry as it stood
    at any instant (decision proofs re-check reviewers against it). Who may read it is who may
    read the entry; 404 when the registry never had it."""
    if principal.sub != reviewer_id:
        require_role(principal, REGISTRY_READERS, "read other reviewers' registry entries")
    else:
        require_role(principal, STAFF, "read the reviewer registry")
    rows = await store.reviewer_history(_uow(request), reviewer_id)
    if not rows:
        raise NotFound(f"reviewer {reviewer_id} not found")
    return ReviewerHistory(
        reviewer_id=reviewer_id,
        items=[
            ReviewerChangeView(
                change=row.change,
                changed_at=row.changed_at,
                changed_by=row.changed_by,
                profile=None
                if row.profile is None
                else ReviewerProfile.model_validate(row.profile),
            )
            for row in rows
        ],
    )


@registry_router.post(
    "",
    summary="Add a reviewer",
    status_code=201,
    response_model=ReviewerView,
    responses={**success_headers(201, location=True), **_responses(409, 422)},
)
async def create_reviewer(
    request: Request,
    principal: Caller,
    body: Annotated[
        NewReviewer,
        Body(
            openapi_examples={
                "reviewer": {
                    "summary": "A technical and committee reviewer",
                    "value": REVIEWER_EXAMPLE,
                }
            }
        ),
    ],
) -> Response:
    """Add a reviewer (admins only). 409 if the id is taken.

    The id must be a safe registry id (422 otherwise): it becomes a path segment of the
    reviewer's URL (`Location`).
    """
    require_role(principal, {Role.ADMIN}, "change the reviewer registry")
    # Built before the write: nothing after the commit can fail and report a committed
    # change as an error.
    headers = {"Location": location(REGISTRY_PREFIX, body.reviewer_id)}
    record = await store.add_reviewer(_uow(request), body, by=principal.sub)
    view = reviewer_view(record)
    return Response(
        view.model_dump_json(), status_code=201, media_type="application/json", headers=headers
    )


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
    require_role(principal, {Role.ADMIN}, "change the reviewer registry")
    record = await store.replace_reviewer(
        _uow(request), body.profile(reviewer_id), by=principal.sub
    )
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
    require_role(principal, {Role.ADMIN}, "change the reviewer registry")
    await store.delete_reviewer(_uow(request), reviewer_id, by=principal.sub)
    return Response(status_code=204)


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
    require_role(principal, {Role.ADMIN}, "list candidate reviewers")
    return await store.candidates(_uow(request), stage, organisation or [])
