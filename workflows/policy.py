"""The review rules of ``IncentiveApproval`` as pure functions: no Temporal, no I/O.

Kept apart from the workflow so the rules can be unit-tested directly and read in one place:
the stages and their order, the ``decide`` validator's refusals (every check, in its order),
how a stage counts its decisions, and the ids the workflow derives. Who gets a task is in
:mod:`workflows.staffing`; the events are built in :mod:`workflows.events`; the conflict of
interest rule is :mod:`contracts.conflicts`, shared with the review desk.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from contracts.conflicts import Organisation, conflicts
from contracts.v1.common import Decision, FastTrackDeclined, FastTrackItem, ReviewStage
from contracts.v1.desk import (
    DecisionRefusal,
    ReviewDecisionRequest,
    ReviewerProfile,
    ReviewerRole,
    TaskReassignment,
)
from workflows.state import Phase, StageState, StageStatus, Task, TaskStatus

#: The registry role a reviewer needs to decide each stage.
STAGE_ROLES: Mapping[ReviewStage, ReviewerRole] = {
    ReviewStage.TECHNICAL: ReviewerRole.TECHNICAL,
    ReviewStage.SECURITY: ReviewerRole.SECURITY,
    ReviewStage.FINANCE: ReviewerRole.FINANCE,
    ReviewStage.COMMITTEE: ReviewerRole.COMMITTEE,
    # Whether a milestone is met is a technical judgement on the firm's evidence.
    ReviewStage.MILESTONE: ReviewerRole.TECHNICAL,
}

#: The review stages in order; the stages of one group run in parallel.
REVIEW_GROUPS: tuple[tuple[Phase, tuple[ReviewStage, ...]], ...] = (
    (Phase.TECHNICAL_SECURITY_REVIEW, (ReviewStage.TECHNICAL, ReviewStage.SECURITY)),
    (Phase.FINANCE_REVIEW, (ReviewStage.FINANCE,)),
    (Phase.COMMITTEE_REVIEW, (ReviewStage.COMMITTEE,)),
)

#: The review stages in order (the milestone stage comes after the award opened).
STAGE_ORDER: tuple[ReviewStage, ...] = tuple(s for _, group in REVIEW_GROUPS for s in group)

_FINAL = (Decision.APPROVE, Decision.REJECT)


def group_of(stage: ReviewStage) -> tuple[Phase, tuple[ReviewStage, ...]]:
    """The phase and the parallel stages ``stage`` belongs to."""
    return next(group for group in REVIEW_GROUPS if stage in group[1])


def next_phase(stage: ReviewStage) -> Phase:
    """The phase after the group of ``stage`` is approved."""
    index = next(i for i, group in enumerate(REVIEW_GROUPS) if stage in group[1])
    return REVIEW_GROUPS[index + 1][0] if index + 1 < len(REVIEW_GROUPS) else Phase.APPROVED


def group_stages(phase: Phase) -> tuple[ReviewStage, ...]:
    """The stages reviewed in ``phase`` (none for a phase that is no review group)."""
    return next((stages for p, stages in REVIEW_GROUPS if p is phase), ())


# --- the decide validator ------------------------------------------------------------------------


@dataclass(frozen=True)
class Refusal:
    """Why a decision is refused: the code the desk maps to a problem, and words for people."""

    code: DecisionRefusal
    message: str


@dataclass(frozen=True)
class Application:
    """What the validator sees of a run: its phase, stages, tasks and the assignment snapshots."""

    phase: Phase
    stages: Mapping[ReviewStage, StageState]
    tasks: Mapping[str, Task]
    #: The registry profiles the workflow snapshotted at assignment, by reviewer id.
    profiles: Mapping[str, ReviewerProfile]
    #: The firm and its parent companies, from the latest revision.
    organisations: Sequence[Organisation]
    #: The fast-track items the firm asked for.
    fast_track_requested: Sequence[FastTrackItem] = ()


def refusal(request: ReviewDecisionRequest, app: Application) -> Refusal | None:
    """Why ``request`` must be refused, or None when the decision may be recorded.

    Checked in this order, so a reviewer learns the most fundamental problem first:
    ``invalid_request``, ``application_closed``, ``wrong_role``, ``conflict_of_interest``,
    ``separation_of_duties``, ``duplicate_decision``, ``stage_not_open``, ``not_assigned``.
    A supervisor deciding an escalated task in its reviewer's place (:func:`standing_in`) needs
    the supervisor role instead of the stage's, and the task must be an escalated review task
    (``invalid_request`` otherwise); the rest applies to them unchanged.

    ``application_closed`` comes before anything about the reviewer: once the application has
    ended, that is the answer whoever asks, and it is the answer the desk gives when the
    workflow has already completed, so a late vote reads the same whenever it arrives. (A
    repeated request id is answered with its first outcome before any of this.)
    """
    who, stage = request.reviewer_id, request.stage
    if request.requested_fields and request.decision is not Decision.REQUEST_INFORMATION:
        return Refusal(
            DecisionRefusal.INVALID_REQUEST,
            "requested_fields only go with a request_information decision.",
        )
    if request.fast_track_declined:
        if stage is not ReviewStage.COMMITTEE or request.decision is not Decision.APPROVE:
            return Refusal(
                DecisionRefusal.INVALID_REQUEST,
                "fast_track_declined only goes with a committee member's approve decision.",
            )
        unknown = [
            d.item.value
            for d in request.fast_track_declined
            if d.item not in app.fast_track_requested
        ]
        if unknown:
            return Refusal(
                DecisionRefusal.INVALID_REQUEST,
                f"The application does not ask for {', '.join(unknown)}.",
            )
    if stage is ReviewStage.MILESTONE and request.decision is Decision.REQUEST_INFORMATION:
        return Refusal(
            DecisionRefusal.INVALID_REQUEST,
            "A milestone is verified or rejected; a rejection goes back to the firm with the "
            "comment as its reason.",
        )
    closed = app.phase.ended if stage is ReviewStage.MILESTONE else app.phase.final
    if closed:
        return Refusal(
            DecisionRefusal.APPLICATION_CLOSED,
            f"The application has ended ({app.phase.value}); no stage of it takes decisions "
            "any more.",
        )
    task = app.tasks.get(request.task_id)
    in_place = standing_in(request, task)
    role = STAGE_ROLES[stage]
    if in_place:
        assert request.supervisor is not None
        if ReviewerRole.SUPERVISOR not in request.token_roles or not request.supervisor.active:
            return Refusal(
                DecisionRefusal.WRONG_ROLE,
                f"{who} is not an active supervisor, so cannot decide another reviewer's task.",
            )
        assert task is not None
        if task.stage is not stage or stage is ReviewStage.MILESTONE or task.escalated_at is None:
            return Refusal(
                DecisionRefusal.INVALID_REQUEST,
                f"Task {request.task_id} has not been escalated; a supervisor decides only "
                "escalated review tasks of other reviewers.",
            )
    elif role not in request.token_roles:
        return Refusal(
            DecisionRefusal.WRONG_ROLE,
            f"{who} does not hold the {role.value} role needed to decide the {stage.value} stage.",
        )
    profile = request.supervisor if in_place else app.profiles.get(who)
    hits = conflicts(profile, app.organisations) if profile else []
    if hits:
        return Refusal(
            DecisionRefusal.CONFLICT_OF_INTEREST,
            f"{who} declares an affiliation or ownership interest in {', '.join(hits)} (the "
            "applicant or its parent company) and may not decide this application.",
        )
    other = next(
        (
            t.stage
            for t in app.tasks.values()
            if t.reviewer_id == who and t.stage is not stage and t.decision is not None
        ),
        None,
    )
    if other is not None:
        return Refusal(
            DecisionRefusal.SEPARATION_OF_DUTIES,
            f"{who} already decided the {other.value} stage of this application; one person "
            "decides at most one stage.",
        )
    mine = task is not None and task.reviewer_id == who and task.stage is stage
    duplicate = decided_task(app.tasks.values(), who, stage, task if mine else None)
    if duplicate is not None:
        assert duplicate.decision is not None
        assert duplicate.decided_at is not None
        return Refusal(
            DecisionRefusal.DUPLICATE_DECISION,
            f"{who} already decided the {stage.value} stage ({duplicate.decision.value} on "
            f"task {duplicate.task_id}, {duplicate.decided_at:%Y-%m-%d %H:%M} UTC).",
        )
    state = app.stages.get(stage)
    status = state.status if state is not None else StageStatus.PENDING
    if status is not StageStatus.OPEN:
        return Refusal(
            DecisionRefusal.STAGE_NOT_OPEN,
            f"The {stage.value} stage is not open for decisions: it is {status.value} and the "
            f"application is {app.phase.value}.",
        )
    if task is None or not (mine or in_place) or task.status is not TaskStatus.OPEN:
        return Refusal(
            DecisionRefusal.NOT_ASSIGNED,
            f"{who} is not assigned an open task {request.task_id} of the {stage.value} stage "
            "of this application.",
        )
    return None


def standing_in(request: ReviewDecisionRequest, task: Task | None) -> bool:
    """Whether ``request`` is a supervisor's decision on another reviewer's task, in their place.

    The supervisor stands in for the stage's role on an escalated review task; conflict of
    interest, separation of duties, one decision per stage and an open stage apply to them as to
    any reviewer (:func:`refusal`).
    """
    return (
        request.supervisor is not None
        and task is not None
        and task.reviewer_id != request.reviewer_id
    )


def reassignment_refusal(request: TaskReassignment, app: Application) -> Refusal | None:
    """Why a supervisor's ``reassign`` must be refused, or None when it may go ahead.

    Only an open, escalated review task moves, by a supervisor, to an active reviewer who
    holds the stage's role, declares no interest in the firm, has decided no other stage of
    the application (separation of duties) and holds no task on this stage yet.
    """
    who, to = request.supervisor_id, request.reviewer
    if app.phase.final:
        return Refusal(
            DecisionRefusal.APPLICATION_CLOSED,
            f"The application has ended ({app.phase.value}); no task of it moves any more.",
        )
    if ReviewerRole.SUPERVISOR not in request.supervisor_roles:
        return Refusal(
            DecisionRefusal.WRONG_ROLE, f"{who} is not a supervisor, so cannot reassign tasks."
        )
    task = app.tasks.get(request.task_id)
    if task is None or task.status is not TaskStatus.OPEN:
        return Refusal(
            DecisionRefusal.STAGE_NOT_OPEN,
            f"Task {request.task_id} is not open: it was decided or cancelled meanwhile.",
        )
    if task.stage is ReviewStage.MILESTONE or task.escalated_at is None:
        return Refusal(
            DecisionRefusal.INVALID_REQUEST,
            f"Task {request.task_id} has not been escalated; only escalated review tasks are "
            "reassigned.",
        )
    if not to.active or STAGE_ROLES[task.stage] not in to.roles:
        return Refusal(
            DecisionRefusal.WRONG_ROLE,
            f"{to.reviewer_id} does not hold the {STAGE_ROLES[task.stage].value} role needed "
            f"for the {task.stage.value} stage, or is not active.",
        )
    hits = conflicts(to, app.organisations)
    if hits:
        return Refusal(
            DecisionRefusal.CONFLICT_OF_INTEREST,
            f"{to.reviewer_id} declares an affiliation or ownership interest in "
            f"{', '.join(hits)} (the applicant or its parent company) and may not decide this "
            "application.",
        )
    if any(
        t.reviewer_id == to.reviewer_id and t.stage is not task.stage and t.decision is not None
        for t in app.tasks.values()
    ):
        return Refusal(
            DecisionRefusal.SEPARATION_OF_DUTIES,
            f"{to.reviewer_id} already decided another stage of this application; one person "
            "decides at most one stage.",
        )
    if any(
        t.reviewer_id == to.reviewer_id and t.stage is task.stage and t.round == task.round
        for t in app.tasks.values()
    ):
        return Refusal(
            DecisionRefusal.DUPLICATE_DECISION,
            f"{to.reviewer_id} already holds a task of the {task.stage.value} stage.",
        )
    return None


def decided_task(
    tasks: Iterable[Task], who: str, stage: ReviewStage, named: Task | None
) -> Task | None:
    """The decision that makes a new one by ``who`` on ``stage`` a duplicate, if any.

    Either the named task is already decided, or ``who`` approved or rejected the stage and
    holds no open task on it (after an information request the same reviewer gets a fresh
    task and decides again; that is not a duplicate).
    """
    if named is not None and named.decision is not None:
        return named
    mine = [t for t in tasks if t.reviewer_id == who and t.stage is stage]
    if any(t.status is TaskStatus.OPEN for t in mine):
        return None
    final = [t for t in mine if t.decision in _FINAL]
    return final[-1] if final else None


# --- counting ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tally:
    """The approvals and rejections a stage needs and has (a single reviewer is 1 of 1)."""

    required: int
    members: int
    approvals: int
    rejections: int

    @property
    def approved(self) -> bool:
        """Enough approvals carried the stage."""
        return self.approvals >= self.required

    @property
    def rejected(self) -> bool:
        """So many rejected that the remaining members can no longer reach the quorum."""
        return self.rejections > self.members - self.required


def tally(state: StageState, tasks: Iterable[Task]) -> Tally:
    """How the decisions on the tasks of ``state``'s stage count against its quorum."""
    decided = [t for t in tasks if t.stage is state.stage]
    return Tally(
        required=state.required,
        members=state.members,
        approvals=sum(t.decision is Decision.APPROVE for t in decided),
        rejections=sum(t.decision is Decision.REJECT for t in decided),
    )


def group_status(
    stages: Mapping[ReviewStage, StageState], group: Sequence[ReviewStage]
) -> StageStatus:
    """How a group of parallel stages stands: rejected or paused if any is, approved if all are."""
    statuses = [stages[s].status for s in group]
    for decisive in (StageStatus.REJECTED, StageStatus.PAUSED):
        if decisive in statuses:
            return decisive
    if all(s is StageStatus.APPROVED for s in statuses):
        return StageStatus.APPROVED
    return StageStatus.OPEN


# --- derived ids ---------------------------------------------------------------------------------


def short_hash(*parts: str, length: int = 16) -> str:
    """A stable hexadecimal digest of ``parts`` (ids must fit the 100-character Identifier)."""
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:length]


def task_id(application_id: str, stage: ReviewStage, reviewer_id: str, round_: int) -> str:
    """The review task of one reviewer on one stage in one round (rounds follow amendments)."""
    return f"task_{stage.value}_{short_hash(application_id, stage.value, reviewer_id, str(round_))}"


def information_request_id(application_id: str, loop: int) -> str:
    """The id of the ``loop``-th information request; the amendment names it."""
    return f"req_{short_hash(application_id, 'information', str(loop))}"


def eligibility_task_id(application_id: str, revision: int) -> str:
    """The pseudo task of an information request raised by the eligibility rules."""
    return f"task_eligibility_{short_hash(application_id, 'eligibility', str(revision))}"


def fast_track_verdicts(
    requested: Sequence[FastTrackItem], tasks: Iterable[Task], required: int
) -> tuple[list[FastTrackItem], list[FastTrackDeclined]]:
    """The requested fast-track items the committee approved, and those it did not, with why.

    An item is approved when at least ``required`` (the quorum) of the approving committee
    members approved it, that is did not decline it; otherwise it is declined with the reasons
    of the members who declined it.
    """
    approvers = [
        t for t in tasks if t.stage is ReviewStage.COMMITTEE and t.decision is Decision.APPROVE
    ]
    approved: list[FastTrackItem] = []
    declined: list[FastTrackDeclined] = []
    for item in requested:
        reasons = [d.reason for t in approvers for d in t.fast_track_declined if d.item is item]
        if len(approvers) - len(reasons) >= required:
            approved.append(item)
        else:
            declined.append(FastTrackDeclined(item=item, reason=" ".join(reasons)[:4000]))
    return approved, declined
