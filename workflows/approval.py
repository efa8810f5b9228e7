"""The ``IncentiveApproval`` workflow: one long-running instance per application.

The workflow id is the application id. The Kafka→Temporal bridge starts it with
signal-with-start and forwards later facts (submission, amendments, eligibility decisions,
withdrawal) as signals. Every signal carries the ``event_id`` of the Kafka message it came from;
the workflow ignores an id it has seen, so a redelivered message changes nothing.

Stages::

    eligibility ─▶ technical ∥ security ─▶ finance ─▶ committee (N of M) ─▶ approved
         │                 │                  │             │
         └── any stage may reject (application.rejected) or request information, which pauses
             the stage until the firm amends and eligibility passes the new revision; no
             amendment within the timeout withdraws the application.

Reviewers act through the ``decide`` update (:data:`contracts.v1.desk.DECIDE_UPDATE`). Its
validator refuses with an ``ApplicationError`` whose type is a
:class:`~contracts.v1.desk.DecisionRefusal` code; a repeated ``request_id`` returns the first
outcome. The update handler applies the decision to the state at once (so the next validation
already sees it) and queues the events it causes; the main coroutine publishes them, in order,
through the publish activity.

The rules live in pure modules that mypy strict and the import contracts check: the validator's
refusals, the stage order and the tallies in :mod:`workflows.policy`, who gets a task in
:mod:`workflows.staffing`, the events in :mod:`workflows.events`, and the conflict-of-interest
rule in :mod:`contracts.conflicts` (shared with the desk). This class keeps the run loop, the
signal, update and query handlers, and the timers.

Every transition is an event naming its actor: the reviewer for their decisions, information
requests and rejections; ``system:eligibility`` for the rules' outcomes; ``system:workflows``
for what the workflow does by itself (assignments, reminders, escalations, cancellations, the
approval, an information timeout). Events are chained by ``causation_id``.

Workflow code is deterministic: time comes from ``workflow.now()``, event ids from
:func:`contracts.envelope.deterministic_event_id` with a step unique per transition, reviewer
choice from sorted ids, timers from ``workflow.wait_condition(..., timeout=...)``, and all I/O
happens in activities.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from pydantic import BaseModel
from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, is_cancelled_exception

with workflow.unsafe.imports_passed_through():
    # One module per statement: `from workflows import events` would take the sandbox's own
    # `workflows` package and import the submodules into the sandbox again for every run.
    import workflows.events as events
    import workflows.offering as offering
    import workflows.policy as policy
    import workflows.staffing as staffing
    from contracts.catalog import encode, make_envelope, payload_model
    from contracts.conflicts import Organisation, firm_organisations
    from contracts.envelope import Actor, ActorKind, Envelope, deterministic_event_id
    from contracts.topics import topic_for_type
    from contracts.v1.applications import ApplicationContent
    from contracts.v1.common import (
        CompensationReason,
        Decision,
        EligibilityOutcome,
        ReviewStage,
        Stage,
    )
    from contracts.v1.desk import (
        DECIDE_UPDATE,
        REASSIGN_UPDATE,
        ReviewDecisionOutcome,
        ReviewDecisionRequest,
        ReviewerProfile,
        ReviewerRole,
        TaskReassigned,
        TaskReassignment,
    )
    from contracts.v1.disbursement import (
        AwardCharged,
        AwardOpened,
        BudgetExhausted,
        TrancheFailed,
        TranchePaid,
        TrancheReleased,
    )
    from contracts.v1.offers import MilestoneReported, OfferAccepted, OfferDeclined
    from contracts.v1.zones import ZoneAllocated, ZoneHeld, ZoneRefused, ZoneWaitlisted
    from workflows.activities import CandidateQuery, OutgoingMessage, Publisher, ReviewDesk
    from workflows.inputs import (
        AmendedSignal,
        ApprovalInput,
        ApprovalPolicy,
        CancellationSignal,
        Carried,
        EligibilitySignal,
        FactSignal,
        RefusalSignal,
        SubmittedSignal,
        WithdrawalSignal,
    )
    from workflows.state import (
        ApprovalState,
        DecisionView,
        InformationRequest,
        Milestone,
        MilestoneStatus,
        OfferView,
        Phase,
        StageState,
        StageStatus,
        Task,
        TaskStatus,
        TrancheStatus,
        TrancheView,
    )

#: The task queue the worker polls and the bridge starts workflows on.
TASK_QUEUE = "incentive-approval"
#: The named system actor for steps the workflow takes by itself.
WORKFLOW_ACTOR = events.WORKFLOW_ACTOR
#: The named system actor of eligibility decisions the workflow enacts.
ELIGIBILITY_ACTOR = events.ELIGIBILITY_ACTOR
PRODUCER = "workflows"
#: Patch marker: the workflow compensates when one of its commands was dead-lettered.
REFUSAL_PATCH = "command-refusal"
#: Patch marker: on acceptance the award is charged to the budget of the acceptance year.
CHARGE_PATCH = "charge-at-acceptance"
#: Patch marker: after a budget shortfall the run waits for a top-up to open its award.
BUDGET_WAIT_PATCH = "budget-wait"
#: Patch marker: a tranche's release (or failure) that arrives after its payment leaves it paid.
TRANCHE_ORDER_PATCH = "tranche-facts-in-any-order"

PUBLISH_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
)
#: The desk is asked again within a few minutes; after that the workflow waits its own retry
#: interval (a durable timer), so a long desk outage never blocks withdrawal handling.
DESK_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=1),
)
DESK_SCHEDULE_TO_CLOSE = timedelta(minutes=5)


@workflow.defn(name="IncentiveApproval")
class IncentiveApproval:
    """Drives one application from submission to approval, rejection or withdrawal."""

    @workflow.init
    def __init__(self, inp: ApprovalInput) -> None:
        self._input = inp
        self._seen: set[str] = set()
        self._firm_id: str | None = None
        self._submitted: SubmittedSignal | None = None
        self._content: ApplicationContent | None = None
        self._revision: int | None = None
        self._assessments: dict[int, EligibilitySignal] = {}
        self._assessment: EligibilitySignal | None = None
        self._withdrawal: WithdrawalSignal | None = None
        self._phase = Phase.AWAITING_ELIGIBILITY
        self._reasons: list[str] = []
        # The milestone stage joins once the award has a milestone to verify.
        self._stages: dict[ReviewStage, StageState] = {
            stage: StageState(stage=stage) for stage in ReviewStage if stage in policy.STAGE_ORDER
        }
        committee = self._stages[ReviewStage.COMMITTEE]
        committee.required = inp.policy.committee_required
        committee.members = inp.policy.committee_members
        self._tasks: dict[str, Task] = {}
        self._profiles: dict[str, ReviewerProfile] = {}
        self._outcomes: dict[str, ReviewDecisionOutcome] = {}
        self._reassigned: dict[str, TaskReassigned] = {}
        self._decisions: list[DecisionView] = []
        self._outbox: list[Envelope[BaseModel]] = []
        self._request: InformationRequest | None = None
        self._requests = 0
        # The event that caused the latest transition: the causation of what follows.
        self._cause: uuid.UUID | None = None
        # After the committee: facts from the firm, the zones and disbursement, in arrival order.
        self._facts: list[FactSignal] = []
        self._offer: OfferView | None = None
        self._cancellation: CancellationSignal | None = None
        self._refusal: RefusalSignal | None = None
        self._answer: FactSignal | None = None
        if inp.resume is not None:
            self._restore(inp.resume)

    # --- signals -------------------------------------------------------------------------------

    def _first_time(self, event_id: str) -> bool:
        if event_id in self._seen:
            return False
        self._seen.add(event_id)
        return True

    def _adopt(self, firm_id: str, revision: int, content: ApplicationContent) -> None:
        # Amendments and the submission travel on one partition, but keep the newest anyway.
        self._firm_id = self._firm_id or firm_id
        if self._revision is None or revision > self._revision:
            self._revision = revision
            self._content = content

    @workflow.signal(name="submitted")
    def submitted(self, signal: SubmittedSignal) -> None:
        """The application was submitted (duplicates ignored)."""
        if self._first_time(signal.event_id) and self._submitted is None:
            self._submitted = signal
            self._adopt(signal.firm_id, signal.revision, signal.content)

    @workflow.signal(name="amended")
    def amended(self, signal: AmendedSignal) -> None:
        """The firm amended the application: a new revision (duplicates ignored)."""
        if self._first_time(signal.event_id):
            self._adopt(signal.firm_id, signal.revision, signal.content)

    @workflow.signal(name="eligibility_assessed")
    def eligibility_assessed(self, signal: EligibilitySignal) -> None:
        """Record an eligibility decision for the revision it assessed (duplicates ignored).

        Decisions are kept per revision: the workflow only ever acts on the decision about the
        revision it waits for, so a late decision about an older revision changes nothing.
        """
        if self._first_time(signal.event_id):
            self._assessments.setdefault(signal.assessment.application_revision, signal)

    @workflow.signal(name="withdrawn")
    def withdrawn(self, signal: WithdrawalSignal) -> None:
        """The firm withdrew the application (duplicates ignored)."""
        if self._first_time(signal.event_id) and self._withdrawal is None:
            self._withdrawal = signal

    @workflow.signal(name="fact")
    def fact(self, signal: FactSignal) -> None:
        """A later fact: the firm's answer or milestone, or what zones or disbursement did."""
        if self._first_time(signal.event_id):
            self._facts.append(signal)

    @workflow.signal(name="command_refused")
    def command_refused(self, signal: RefusalSignal) -> None:
        """The zones or disbursement service dead-lettered one of the workflow's commands."""
        if self._first_time(signal.event_id) and self._refusal is None:
            self._refusal = signal

    @workflow.signal(name="cancelled")
    def cancelled(self, signal: CancellationSignal) -> None:
        """An administrator cancelled the application (duplicates ignored)."""
        if self._first_time(signal.event_id) and self._cancellation is None:
            self._cancellation = signal

    # --- query ---------------------------------------------------------------------------------

    @workflow.query(name="state")
    def state(self) -> ApprovalState:
        """Where the application stands: phase, stages, tasks, decisions, open request."""
        return self._snapshot()

    def _snapshot(self) -> ApprovalState:
        open_tasks = [t for t in self._tasks.values() if t.status is TaskStatus.OPEN]
        assignments: dict[ReviewStage, list[str]] = {}
        for task in open_tasks:
            assignments.setdefault(task.stage, []).append(task.reviewer_id)
        assessment = self._assessment.assessment if self._assessment else None
        return ApprovalState(
            application_id=self._input.application_id,
            phase=self._phase,
            firm_id=self._firm_id,
            revision=self._revision,
            eligibility_outcome=assessment.outcome if assessment else None,
            rule_set_version=assessment.rule_set_version if assessment else None,
            reasons=list(self._reasons),
            quorum=self._policy.quorum,
            open_stages=[s for s, st in self._stages.items() if st.status is StageStatus.OPEN],
            assignments=assignments,
            stages=[st.model_copy(deep=True) for st in self._stages.values()],
            tasks=[t.model_copy() for t in self._tasks.values()],
            decisions=list(self._decisions),
            information_request=self._request,
            information_requests=self._requests,
            offer=self._offer.model_copy(deep=True) if self._offer else None,
        )

    # --- the decide update ---------------------------------------------------------------------

    @workflow.update(name=DECIDE_UPDATE)
    def decide(self, request: ReviewDecisionRequest) -> ReviewDecisionOutcome:
        """Record a reviewer's decision and return where the application stands after it."""
        first = self._outcomes.get(request.request_id)
        if first is not None:  # a retried request: same answer, nothing recorded twice
            return first
        task = self._tasks[request.task_id]
        now = workflow.now()
        if request.supervisor is not None and policy.standing_in(request, task):
            # The supervisor decides in the reviewer's place: the escalated task is cancelled
            # and the decision is the supervisor's, on a task of their own.
            task = self._hand_over(
                task,
                request.supervisor,
                f"Decided by {request.reviewer_id} in place of {task.reviewer_id}",
                now,
            )
        task.status = TaskStatus.DECIDED
        task.request_id = request.request_id
        task.decision = request.decision
        task.comment = request.comment
        task.decided_at = now
        task.requested_fields = list(request.requested_fields)
        task.fast_track_declined = list(request.fast_track_declined)
        task.decided_on_revision = self._revision
        decision_event = self._queue(events.decision_recorded(self._app_id, task, now))
        task.decision_event_id = str(decision_event)
        self._cause = decision_event
        self._decisions.append(
            DecisionView(
                request_id=request.request_id,
                task_id=task.task_id,
                stage=task.stage,
                reviewer_id=task.reviewer_id,
                decision=request.decision,
                comment=request.comment,
                decided_at=now,
            )
        )

        stage = self._stages[task.stage]
        tally = policy.tally(stage, self._tasks.values())
        closed = False
        if task.stage is ReviewStage.MILESTONE:
            closed = True
            self._milestone_decided(task)
        elif request.decision is Decision.REQUEST_INFORMATION:
            self._pause_group(task)
        elif tally.rejected:
            closed = True
            self._reject_by_reviewers(task)
        elif tally.approved:
            closed = True
            stage.status = StageStatus.APPROVED
            self._cancel_open_tasks(
                f"The committee reached {tally.approvals} of {tally.members} approvals.",
                stages=(task.stage,),
            )
            _, group = policy.group_of(task.stage)
            if all(self._stages[s].status is StageStatus.APPROVED for s in group):
                self._phase = policy.next_phase(task.stage)
                # The next group is being staffed from now on (the main coroutine assigns it).
                for next_stage in policy.group_stages(self._phase):
                    self._stages[next_stage].status = StageStatus.STAFFING
        outcome = ReviewDecisionOutcome(
            request_id=request.request_id,
            stage=task.stage,
            decision=request.decision,
            stage_closed=closed,
            application_phase=self._phase.value,
        )
        self._outcomes[request.request_id] = outcome
        return outcome

    @decide.validator
    def validate_decide(self, request: ReviewDecisionRequest) -> None:
        """Refuse a decision the rules do not allow, with the reason in words.

        The checks and their order are :func:`workflows.policy.refusal`. A repeated
        ``request_id`` passes and gets the first outcome.
        """
        if request.request_id in self._outcomes:
            return
        refused = policy.refusal(
            request,
            policy.Application(
                phase=self._phase,
                stages=self._stages,
                tasks=self._tasks,
                profiles=self._profiles,
                organisations=self._organisations(),
                fast_track_requested=(
                    [f.item for f in self._content.incentives.fast_track] if self._content else []
                ),
            ),
        )
        if refused is not None:
            raise ApplicationError(refused.message, type=refused.code.value, non_retryable=True)

    # --- the reassign update -------------------------------------------------------------------

    @workflow.update(name=REASSIGN_UPDATE)
    def reassign(self, request: TaskReassignment) -> TaskReassigned:
        """A supervisor gives an escalated task to another reviewer: the task is cancelled and
        the reviewer gets a new one on the same stage and round, with a new due date."""
        first = self._reassigned.get(request.request_id)
        if first is not None:
            return first
        old = self._tasks[request.task_id]
        new_reviewer = request.reviewer.reviewer_id
        task = self._hand_over(
            old,
            request.reviewer,
            f"Reassigned by {request.supervisor_id} to {new_reviewer}: {request.reason}",
            workflow.now(),
        )
        outcome = TaskReassigned(
            request_id=request.request_id,
            cancelled_task_id=old.task_id,
            task_id=task.task_id,
            reviewer_id=new_reviewer,
        )
        self._reassigned[request.request_id] = outcome
        return outcome

    def _hand_over(self, old: Task, to: ReviewerProfile, reason: str, now: datetime) -> Task:
        """Cancel ``old`` and give its stage and round to ``to`` on a new task."""
        self._profiles[to.reviewer_id] = to
        old.status = TaskStatus.CANCELLED
        old.cancelled_reason = reason
        self._queue(events.task_cancelled(self._app_id, old, reason, now, self._cause))
        stage = self._stages[old.stage]
        stage.reviewers = [to.reviewer_id if r == old.reviewer_id else r for r in stage.reviewers]
        return self._assign(old.stage, to.reviewer_id, now, round_=old.round)

    @reassign.validator
    def validate_reassign(self, request: TaskReassignment) -> None:
        """Refuse a reassignment the rules do not allow.

        The checks are :func:`workflows.policy.reassignment_refusal`.
        """
        if request.request_id in self._reassigned:
            return
        refused = policy.reassignment_refusal(
            request,
            policy.Application(
                phase=self._phase,
                stages=self._stages,
                tasks=self._tasks,
                profiles=self._profiles,
                organisations=self._organisations(),
            ),
        )
        if refused is not None:
            raise ApplicationError(refused.message, type=refused.code.value, non_retryable=True)

    # --- the run -------------------------------------------------------------------------------

    @workflow.run
    async def run(self, inp: ApprovalInput) -> ApprovalState:
        """Eligibility, the review groups in order, then the offer, the award and its milestones.

        Runs recorded before the offer existed ended right after the approval; the
        ``offer`` patch keeps them replaying.
        """
        if inp.resume is not None:
            await self._milestones()
            await self._flush()
            return self._snapshot()
        approved = False
        if await self._eligibility_stage():
            for phase, stages in policy.REVIEW_GROUPS:
                if not await self._review_group(phase, stages):
                    break
            else:
                self._approve()
                approved = True
        await self._flush()
        if approved and workflow.patched("offer"):
            await self._after_approval()
            await self._flush()
        return self._snapshot()

    @property
    def _policy(self) -> ApprovalPolicy:
        return self._input.policy

    @property
    def _app_id(self) -> str:
        return self._input.application_id

    def _organisations(self) -> tuple[Organisation, ...]:
        return firm_organisations(self._content) if self._content else ()

    def _current_assessment(self) -> EligibilitySignal | None:
        return None if self._revision is None else self._assessments.get(self._revision)

    # --- eligibility and the information loop ---------------------------------------------------

    async def _eligibility_stage(self) -> bool:
        """Stage 1. True when the application may go to review."""
        # The bridge reads applications.events and eligibility.events separately, so the
        # decision may arrive before the submission; wait for both.
        await workflow.wait_condition(
            lambda: (
                (self._submitted is not None and self._current_assessment() is not None)
                or self._withdrawal is not None
            )
        )
        if self._withdrawal is not None:
            self._end_withdrawn()
            return False
        signal = self._current_assessment()
        assert signal is not None
        return await self._enact_eligibility(signal, waiting=ReviewStage.TECHNICAL)

    async def _enact_eligibility(self, signal: EligibilitySignal, *, waiting: ReviewStage) -> bool:
        """Act on an eligibility decision; True when the application may go (back) to review.

        ``waiting`` is the review stage that waits if the rules ask for more information.
        """
        self._assessment = signal
        self._cause = uuid.UUID(signal.event_id)
        assessment = signal.assessment
        match assessment.outcome:
            case EligibilityOutcome.INELIGIBLE:
                reasons = [r.explanation for r in assessment.rule_results if not r.passed] or [
                    "The application does not meet the program's eligibility rules."
                ]
                self._reject(
                    Stage.ELIGIBILITY,
                    reasons,
                    decided_by=f"system:{ELIGIBILITY_ACTOR}",
                    actor=Actor.system(ELIGIBILITY_ACTOR),
                )
                return False
            case EligibilityOutcome.NEEDS_INFORMATION:
                return await self._information_loop(self._eligibility_request(signal, waiting))
        return True

    def _eligibility_request(
        self, signal: EligibilitySignal, waiting: ReviewStage
    ) -> InformationRequest:
        assessment = signal.assessment
        failed = [r.explanation for r in assessment.rule_results if not r.passed]
        return self._new_request(
            stage=waiting,
            source=Stage.ELIGIBILITY,
            requested_by=f"system:{ELIGIBILITY_ACTOR}",
            task_id=policy.eligibility_task_id(self._app_id, assessment.application_revision),
            fields=list(assessment.missing_fields),
            questions=failed,
            base_revision=assessment.application_revision,
        )

    def _reviewer_request(self, task: Task) -> InformationRequest:
        assert task.comment is not None
        assert task.decided_on_revision is not None
        # Dated and based on the decision itself: an amendment may arrive before this runs.
        return self._new_request(
            stage=task.stage,
            source=Stage(task.stage.value),
            requested_by=task.reviewer_id,
            task_id=task.task_id,
            fields=list(task.requested_fields),
            questions=[task.comment],
            base_revision=task.decided_on_revision,
            requested_at=task.decided_at,
        )

    def _new_request(
        self,
        *,
        stage: ReviewStage,
        source: Stage,
        requested_by: str,
        task_id: str,
        fields: list[str],
        questions: list[str],
        base_revision: int,
        requested_at: datetime | None = None,
    ) -> InformationRequest:
        loop = self._requests + 1
        now = requested_at or workflow.now()
        return InformationRequest(
            request_id=policy.information_request_id(self._app_id, loop),
            loop=loop,
            stage=stage,
            source=source,
            requested_by=requested_by,
            task_id=task_id,
            fields=fields,
            questions=questions,
            requested_at=now,
            respond_by=now + timedelta(days=self._policy.information_timeout_days),
            base_revision=base_revision,
            event_id=str(self._event_id(events.information_step(loop))),
        )

    async def _information_loop(self, request: InformationRequest) -> bool:
        """Ask the firm, wait for the amendment and eligibility's verdict on it.

        Repeats while eligibility still finds information missing. True when the amended
        application passed eligibility (the paused stage resumes); False when the run ended
        (withdrawn by the firm or for lack of an amendment, or rejected by eligibility).
        """
        while True:
            self._open_request(request)
            await self._flush()
            try:
                await workflow.wait_condition(
                    functools.partial(self._answered_or_withdrawn, request),
                    timeout=request.respond_by - workflow.now(),
                    timeout_summary=f"information-timeout:{request.loop}",
                )
            except TimeoutError:
                self._withdraw_for_timeout(request)
                return False
            if self._withdrawal is not None:
                self._end_withdrawn()
                return False
            # Eligibility re-runs on the amended revision; only its decision on the newest
            # revision counts (a newer amendment while waiting moves the target).
            self._phase = Phase.AWAITING_ELIGIBILITY
            await workflow.wait_condition(
                lambda: self._current_assessment() is not None or self._withdrawal is not None
            )
            if self._withdrawal is not None:
                self._end_withdrawn()
                return False
            self._request = None
            signal = self._current_assessment()
            assert signal is not None
            if signal.assessment.outcome is EligibilityOutcome.NEEDS_INFORMATION:
                self._assessment = signal
                self._cause = uuid.UUID(signal.event_id)
                request = self._eligibility_request(signal, request.stage)
                continue
            return await self._enact_eligibility(signal, waiting=request.stage)

    def _answered_or_withdrawn(self, request: InformationRequest) -> bool:
        answered = self._revision is not None and self._revision > request.base_revision
        return answered or self._withdrawal is not None

    def _open_request(self, request: InformationRequest) -> None:
        self._requests = request.loop
        self._request = request
        self._phase = Phase.INFORMATION_REQUESTED
        self._queue(events.information_requested(self._app_id, request, self._cause))
        self._cause = uuid.UUID(request.event_id)

    def _withdraw_for_timeout(self, request: InformationRequest) -> None:
        assert self._firm_id is not None
        reason = (
            f"No amendment within {self._policy.information_timeout_days} days of the "
            f"information request {request.request_id}."
        )
        self._cancel_open_tasks(reason)
        self._queue(
            events.withdrawn_for_timeout(
                self._app_id, self._firm_id, request, reason, workflow.now()
            )
        )
        self._close(Phase.WITHDRAWN, [reason])

    # --- review groups -------------------------------------------------------------------------

    async def _review_group(self, phase: Phase, stages: tuple[ReviewStage, ...]) -> bool:
        """Run one group of parallel stages; True when every stage of it approved."""
        self._phase = phase
        for stage in stages:
            self._stages[stage].status = StageStatus.STAFFING
        while True:
            if not await self._staff(stages):
                return False
            outcome = await self._watch(stages)
            if outcome is not StageStatus.PAUSED:
                return outcome is StageStatus.APPROVED
            asking = self._asking_task(stages)
            if not await self._information_loop(self._reviewer_request(asking)):
                return False
            # The stage resumes: the same reviewers get fresh tasks for the amended revision.
            self._phase = phase
            for stage in stages:
                if self._stages[stage].status is StageStatus.PAUSED:
                    self._stages[stage].status = StageStatus.STAFFING

    def _asking_task(self, stages: Sequence[ReviewStage]) -> Task:
        return next(
            t
            for t in reversed(self._tasks.values())
            if t.stage in stages and t.decision is Decision.REQUEST_INFORMATION
        )

    def _group_status(self, stages: Sequence[ReviewStage]) -> StageStatus:
        return policy.group_status(self._stages, stages)

    async def _watch(self, stages: tuple[ReviewStage, ...]) -> StageStatus:
        """Publish decisions as they come and fire SLA timers until the group settles.

        Returns APPROVED, REJECTED or PAUSED for the group, or CANCELLED once withdrawn.
        """
        while True:
            await self._flush()
            if self._withdrawal is not None and not self._phase.final:
                self._end_withdrawn()
                return StageStatus.CANCELLED
            status = self._group_status(stages)
            if status is not StageStatus.OPEN:
                return status
            delay = self._next_sla(stages)
            if delay is None or delay > timedelta(0):
                # A decision, a withdrawal or the next SLA mark, whichever comes first.
                with contextlib.suppress(TimeoutError):
                    await workflow.wait_condition(
                        lambda: (
                            bool(self._outbox)
                            or self._withdrawal is not None
                            or self._group_status(stages) is not StageStatus.OPEN
                        ),
                        timeout=delay,
                        timeout_summary="sla",
                    )
            await self._fire_slas(stages)

    def _next_sla(self, stages: Sequence[ReviewStage]) -> timedelta | None:
        """Time until the next reminder or escalation of an open task; None if none is due."""
        marks: list[datetime] = []
        for task in self._open_tasks(stages):
            if task.reminded_at is None:
                marks.append(task.assigned_at + self._policy.sla(self._policy.sla_reminder_days))
            if task.escalated_at is None:
                marks.append(task.due_at)
        return min(marks) - workflow.now() if marks else None

    async def _fire_slas(self, stages: Sequence[ReviewStage]) -> None:
        supervisors: list[ReviewerProfile] | None = None
        for task in self._open_tasks(stages):
            now = workflow.now()
            reminder = task.assigned_at + self._policy.sla(self._policy.sla_reminder_days)
            if task.reminded_at is None and now >= reminder:
                # Dated when it fell due; the timer itself may fire a few milliseconds later.
                task.reminded_at = reminder
                self._queue(events.reminder_due(self._app_id, task, reminder))
            if task.escalated_at is None and now >= task.due_at:
                if supervisors is None:
                    supervisors = await self._supervisors()
                if task.status is not TaskStatus.OPEN:  # decided while the desk answered
                    continue
                now = workflow.now()
                supervisor = self._supervisor_for(task, supervisors)
                task.escalated_at = now
                task.escalated_to = supervisor
                self._queue(
                    events.escalated(
                        self._app_id, task, supervisor, self._policy.sla_escalation_days, now
                    )
                )

    async def _supervisors(self) -> list[ReviewerProfile]:
        try:
            return await self._candidates(ReviewerRole.SUPERVISOR)
        except ActivityError as exc:
            # An escalation must not wait for the registry: it goes to the shared queue.
            workflow.logger.warning("no supervisor list; escalating to the shared queue: %s", exc)
            return []

    def _supervisor_for(self, task: Task, supervisors: Sequence[ReviewerProfile]) -> str | None:
        """The first eligible supervisor by id, or None for the supervisors' shared queue."""
        profile = staffing.supervisor_for(task, supervisors, self._organisations())
        if profile is None:
            return None
        self._profiles.setdefault(profile.reviewer_id, profile)
        return profile.reviewer_id

    def _open_tasks(self, stages: Sequence[ReviewStage] | None = None) -> list[Task]:
        return [
            t
            for t in self._tasks.values()
            if t.status is TaskStatus.OPEN and (stages is None or t.stage in stages)
        ]

    # --- staffing ------------------------------------------------------------------------------

    async def _staff(self, stages: tuple[ReviewStage, ...]) -> bool:
        """Assign the stages of a group that are staffing; False if withdrawn meanwhile.

        While nobody eligible is available (or the desk does not answer) the workflow waits
        ``assignment_retry_minutes`` on a durable timer and asks again; a withdrawal ends the
        wait.
        """
        while True:
            if self._withdrawal is not None:
                self._end_withdrawn()
                return False
            plan = await self._plan_staffing(stages)
            if plan is not None:
                break
            with contextlib.suppress(TimeoutError):
                await workflow.wait_condition(
                    lambda: self._withdrawal is not None,
                    timeout=timedelta(minutes=self._policy.assignment_retry_minutes),
                    timeout_summary="assignment-retry",
                )
        now = workflow.now()
        for stage, reviewers in plan.items():
            for reviewer in reviewers:
                self._assign(stage, reviewer, now)
            self._stages[stage].status = StageStatus.OPEN
        await self._flush()
        return True

    async def _plan_staffing(
        self, stages: tuple[ReviewStage, ...]
    ) -> dict[ReviewStage, list[str]] | None:
        """Who gets a task now, per stage; None when the seats cannot all be filled yet.

        The plan is :mod:`workflows.staffing`'s; this only fetches the desk's candidates for
        the free seats and keeps their profiles as the assignment snapshot.
        """
        organisations = self._organisations()
        seats = staffing.seats_to_fill(
            stages, self._stages, self._tasks.values(), self._profiles, organisations
        )
        candidates: dict[ReviewStage, list[ReviewerProfile]] = {}
        if seats.open:
            try:
                fetched = await asyncio.gather(*(self._candidates(role) for role in seats.roles))
            except ActivityError as exc:
                workflow.logger.warning("review desk unavailable; retrying later: %s", exc)
                return None
            for (stage, _), profiles in zip(seats.open, fetched, strict=True):
                for profile in profiles:
                    self._profiles[profile.reviewer_id] = profile  # the latest snapshot
                candidates[stage] = profiles
        planned = staffing.plan(
            seats, candidates, self._stages, self._tasks.values(), organisations
        )
        if planned is None:
            workflow.logger.info("no eligible reviewer for %s yet", [s for s, _ in seats.open])
            return None
        for stage, reviewers in planned.reviewers.items():
            self._stages[stage].reviewers = reviewers
        return planned.assign

    async def _candidates(self, role: ReviewerRole) -> list[ReviewerProfile]:
        """The desk's candidates for ``role``; :class:`ActivityError` when the desk is away.

        A cancellation of the run (the activity cancelled with it) is not the desk being away:
        it is raised as the cancellation it is, so no caller mistakes it for a reason to wait.
        """
        try:
            return await workflow.execute_activity_method(
                ReviewDesk.candidate_reviewers,
                CandidateQuery(role=role, application_id=self._app_id),
                start_to_close_timeout=timedelta(seconds=30),
                schedule_to_close_timeout=DESK_SCHEDULE_TO_CLOSE,
                retry_policy=DESK_RETRY,
            )
        except ActivityError as exc:
            if is_cancelled_exception(exc):
                raise asyncio.CancelledError from exc
            raise

    def _assign(
        self, stage: ReviewStage, reviewer: str, now: datetime, *, round_: int | None = None
    ) -> Task:
        assert self._firm_id is not None
        assert self._content is not None
        round_ = self._requests if round_ is None else round_
        step = events.assignment_step(stage, reviewer, round_)
        task = Task(
            task_id=policy.task_id(self._app_id, stage, reviewer, round_),
            stage=stage,
            reviewer_id=reviewer,
            round=round_,
            assigned_at=now,
            due_at=now + self._policy.sla(self._policy.sla_escalation_days),
            assigned_event_id=str(self._event_id(step)),
        )
        self._tasks[task.task_id] = task
        summary = events.summary_of(self._firm_id, self._content)
        self._queue(
            events.task_assigned(self._app_id, task, summary, self._policy.quorum, self._cause)
        )
        return task

    # --- decisions' consequences (called from the update handler) -------------------------------

    def _pause_group(self, task: Task) -> None:
        """A reviewer asked for information: the whole group waits for the amendment."""
        _, group = policy.group_of(task.stage)
        for stage in group:
            if self._stages[stage].status is StageStatus.OPEN:
                self._stages[stage].status = StageStatus.PAUSED
        self._cancel_open_tasks(
            f"Paused: {task.reviewer_id} requested information from the firm "
            f"({task.stage.value} stage); the task is assigned again after the amendment.",
            stages=group,
        )
        self._phase = Phase.INFORMATION_REQUESTED

    def _reject_by_reviewers(self, task: Task) -> None:
        """The stage of ``task`` is rejected: the application's journey ends."""
        self._stages[task.stage].status = StageStatus.REJECTED
        reasons = [
            t.comment
            for t in self._tasks.values()
            if t.stage is task.stage and t.decision is Decision.REJECT and t.comment
        ]
        self._cancel_open_tasks(f"The application was rejected at the {task.stage.value} stage.")
        self._reject(
            Stage(task.stage.value),
            reasons,
            decided_by=task.reviewer_id,
            actor=Actor(kind=ActorKind.REVIEWER, id=task.reviewer_id),
        )

    def _cancel_open_tasks(
        self, reason: str, *, stages: Sequence[ReviewStage] | None = None
    ) -> None:
        now = workflow.now()
        for task in self._open_tasks(stages):
            task.status = TaskStatus.CANCELLED
            task.cancelled_reason = reason
            self._queue(events.task_cancelled(self._app_id, task, reason, now, self._cause))

    # --- endings -------------------------------------------------------------------------------

    def _close(self, phase: Phase, reasons: list[str]) -> None:
        self._phase = phase
        self._reasons = reasons
        self._request = None
        for state in self._stages.values():
            if state.status in (StageStatus.STAFFING, StageStatus.OPEN, StageStatus.PAUSED):
                state.status = StageStatus.CANCELLED

    def _reject(self, stage: Stage, reasons: list[str], *, decided_by: str, actor: Actor) -> None:
        assert self._firm_id is not None
        reasons = [events.clip(r) for r in reasons]
        self._queue(
            events.rejected(
                self._app_id,
                self._firm_id,
                stage,
                reasons,
                decided_by=decided_by,
                actor=actor,
                now=workflow.now(),
                cause=self._cause,
            )
        )
        self._close(Phase.REJECTED, reasons)

    def _end_withdrawn(self) -> None:
        signal = self._withdrawal
        assert signal is not None
        self._cause = uuid.UUID(signal.event_id)
        self._cancel_open_tasks(f"The firm withdrew the application: {signal.reason}")
        self._close(Phase.WITHDRAWN, [signal.reason])

    def _approve(self) -> None:
        assert self._firm_id is not None
        assert self._content is not None
        self._queue(
            events.approved(
                self._app_id,
                self._firm_id,
                self._content,
                self._decisions,
                self._policy.quorum,
                workflow.now(),
                self._cause,
            )
        )
        self._close(Phase.APPROVED, [])

    # --- after the committee: hold, reserve, offer ---------------------------------------------

    async def _after_approval(self) -> None:
        """Stages 5 to 7: hold space and reserve the grant, offer, then award and milestones."""
        assert self._firm_id is not None
        assert self._content is not None
        incentives = self._content.incentives
        grant = incentives.grant.amount if incentives.grant else None
        self._cause = self._event_id("approved")  # what follows is caused by the approval
        offer = OfferView(
            offer_id=offering.offer_id(self._app_id),
            allocation_id=offering.allocation_id(self._app_id) if incentives.zone_space else None,
            award_id=offering.award_id(self._app_id) if grant else None,
            grant=grant,
            tranches=offering.tranches(grant, self._policy.tranche_schedule) if grant else [],
        )
        offer.fast_track, offer.fast_track_declined = policy.fast_track_verdicts(
            [f.item for f in incentives.fast_track],
            self._tasks.values(),
            self._policy.committee_required,
        )
        self._offer = offer
        offer_period = timedelta(days=self._policy.offer_days)
        self._hold(offer_period)
        if grant:
            budget = offering.budget_id(self._policy.grant_budget, workflow.now())
            offer.budget_id = budget
            self._queue(
                offering.open_award(self._app_id, self._firm_id, offer, budget, self._cause)
            )
        await self._flush()

        while not await self._wait_facts(self._reserved):
            # A shortfall: runs recorded before the budget waitlist ended here, unfunded.
            if self._phase is not Phase.UNFUNDED or not workflow.patched(BUDGET_WAIT_PATCH):
                return
            if not await self._wait_for_budget():
                return
            self._hold(offer_period)  # funded at last: hold the space again, then offer
            await self._flush()
        if self._phase.ended:  # a budget shortfall
            return

        offer.offered_at = workflow.now()
        offer.expires_at = offer.offered_at + offer_period
        self._phase = Phase.OFFERED
        self._queue(offering.offer_made(self._app_id, self._firm_id, offer, self._cause))
        await self._flush()
        answered = await self._wait_facts(
            lambda: self._answer is not None, within=offer.expires_at - workflow.now()
        )
        if not answered:
            if self._phase.ended:  # withdrawn or cancelled meanwhile
                return
            now = workflow.now()
            self._queue(offering.offer_lapsed(self._app_id, self._firm_id, offer, now))
            self._compensate(
                CompensationReason.OFFER_LAPSED,
                "The offer was not answered before it expired.",
                Actor.system(WORKFLOW_ACTOR),
            )
            return
        answer = self._answer
        assert answer is not None
        actor = offering.actor_of(answer.actor_id, answer.actor_kind)
        self._cause = uuid.UUID(answer.event_id)
        offer.answered_by = answer.actor_id
        if answer.type == "application.offer_declined":
            declined = OfferDeclined.model_validate(answer.payload)
            self._compensate(
                CompensationReason.OFFER_DECLINED,
                declined.reason or "The firm declined the offer.",
                actor,
            )
            return
        await self._accept(actor, OfferAccepted.model_validate(answer.payload).accepted_at)
        await self._milestones()

    def _hold(self, offer_period: timedelta) -> None:
        """Ask the zones to hold the requested space (under this funding round's allocation)."""
        assert self._firm_id is not None
        assert self._content is not None
        offer = self._offer_or_fail()
        if offer.allocation_id is None:
            return
        # The hold outlives the offer by a day: the workflow releases it when the offer
        # lapses, so the firm never loses space while its offer still stands.
        self._queue(
            offering.hold_space(
                self._app_id,
                self._firm_id,
                self._content,
                offer_period + timedelta(days=1),
                self._cause,
                offer.funding_round,
            )
        )

    async def _wait_for_budget(self) -> bool:
        """Waitlisted for budget: wait (a durable timer) until a top-up opens the award.

        True when it opened: the application is approved again, with a fresh allocation id for
        the space it holds anew. False when the run ended instead: the firm withdrew, an
        administrator cancelled, or no budget came within ``budget_wait_days``, which takes
        the award off the budget's waitlist.
        """
        offer = self._offer_or_fail()
        assert offer.award_id is not None
        deadline = workflow.now() + timedelta(days=self._policy.budget_wait_days)
        while True:
            self._apply_facts()
            if offer.award_opened:
                break
            if self._withdrawal is not None or self._cancellation is not None:
                self._end_after_approval()
                await self._flush()
                return False
            remaining = deadline - workflow.now()
            if remaining <= timedelta(0):
                reason = (
                    f"No budget became available within {self._policy.budget_wait_days} days "
                    "of the shortfall; the application no longer waits for budget."
                )
                self._queue(
                    offering.cancel_award(
                        self._app_id,
                        offer,
                        CompensationReason.BUDGET_EXHAUSTED,
                        reason,
                        Actor.system(WORKFLOW_ACTOR),
                        self._cause,
                        offer.funding_round,
                    )
                )
                self._reasons = [reason]
                await self._flush()
                return False
            with contextlib.suppress(TimeoutError):
                await workflow.wait_condition(
                    lambda: (
                        bool(self._facts)
                        or self._withdrawal is not None
                        or self._cancellation is not None
                    ),
                    timeout=remaining,
                    timeout_summary="budget-wait",
                )
        offer.funding_round += 1
        offer.allocation_id = (
            offering.allocation_id(self._app_id, offer.funding_round)
            if offer.allocation_id
            else None
        )
        offer.held = []
        offer.unavailable = []
        offer.waitlisted = False
        offer.space_released = False
        offer.compensation = None
        self._phase = Phase.APPROVED
        self._reasons = []
        return True

    async def _accept(self, actor: Actor, accepted_at: datetime) -> None:
        """Accepted: charge the grant to the acceptance year's budget, allocate the space,
        grant the fast-track items, pay the signing tranche."""
        offer = self._offer
        assert offer is not None
        assert self._firm_id is not None
        now = workflow.now()
        offer.accepted_at = now
        self._phase = Phase.AWARDED
        # Runs recorded before the charge kept the award in the budget of the approval year.
        if offer.award_opened and workflow.patched(CHARGE_PATCH):
            if not await self._charge(actor, accepted_at):
                return
            now = workflow.now()
        if offer.held:
            self._queue(
                offering.confirm_space(self._app_id, actor, self._cause, offer.funding_round)
            )
        validity = timedelta(days=self._policy.fast_track_validity_days)
        for item in offer.fast_track:
            self._queue(
                offering.fast_track_granted(
                    self._app_id, self._firm_id, item, now, validity, self._cause
                )
            )
        if offer.award_opened and offer.tranches:
            offer.tranches[0].status = TrancheStatus.RELEASED
            self._queue(
                offering.release_tranche(
                    self._app_id,
                    offer,
                    1,
                    approved_by=actor.id,
                    evidence="Signing: the firm accepted the offer.",
                    actor=actor,
                    cause=self._cause,
                )
            )
        else:
            self._phase = Phase.COMPLETED  # nothing to pay: the journey ends with the allocation
        await self._flush()

    async def _charge(self, actor: Actor, accepted_at: datetime) -> bool:
        """Move the reservation to the budget of the fiscal year the offer was accepted in.

        False when the application ended meanwhile: that budget could not cover the grant
        (compensated as a budget shortfall), the command was refused, or it was withdrawn.
        """
        offer = self._offer_or_fail()
        budget = offering.budget_id(self._policy.grant_budget, accepted_at)
        if offer.budget_id is None or offer.budget_id == budget:
            return True
        self._queue(
            offering.charge_award(self._app_id, offer, budget, accepted_at, actor, self._cause)
        )
        await self._flush()
        return await self._wait_facts(lambda: offer.budget_id == budget)

    # --- milestones ------------------------------------------------------------------------------

    async def _milestones(self) -> None:
        """Milestone reports, their verification and the tranches, until the last is paid.

        Continues as new when the history grows, carrying the award (months of waiting must
        not grow one run's history without bound).
        """
        while not self._phase.ended:
            if not await self._wait_facts(lambda: self._unstaffed() or self._can_continue_as_new()):
                return
            if self._phase.ended:
                return
            if self._unstaffed():
                await self._staff_milestones()
                continue
            if self._can_continue_as_new():
                await self._flush()
                workflow.continue_as_new(
                    ApprovalInput(
                        application_id=self._app_id,
                        correlation_id=self._input.correlation_id,
                        policy=self._policy,
                        resume=self._carry(),
                    )
                )

    def _unstaffed(self) -> bool:
        return any(
            m.status is MilestoneStatus.REPORTED and m.task_id is None
            for m in self._offer_or_fail().milestones
        )

    def _can_continue_as_new(self) -> bool:
        if self._outbox or self._facts:
            return False
        if any(
            t.status is TaskStatus.OPEN and t.stage is ReviewStage.MILESTONE
            for t in self._tasks.values()
        ):
            return False  # an open verification waits for the desk's update
        info = workflow.info()
        return (
            info.is_continue_as_new_suggested()
            or info.get_current_history_length() > self._policy.history_fact_limit
        )

    def _carry(self) -> Carried:
        assert self._firm_id is not None
        assert self._content is not None
        assert self._revision is not None
        return Carried(
            firm_id=self._firm_id,
            revision=self._revision,
            content=self._content,
            offer=self._offer_or_fail(),
            milestone_stage=self._stages.get(
                ReviewStage.MILESTONE, StageState(stage=ReviewStage.MILESTONE)
            ),
            tasks=[t for t in self._tasks.values() if t.stage is ReviewStage.MILESTONE],
            profiles=self._profiles,
            committed={
                reviewer: stage
                for reviewer, stage in staffing.committed_reviewers(self._stages).items()
                if stage is not ReviewStage.MILESTONE
            },
            cause=str(self._cause) if self._cause else None,
        )

    def _restore(self, carried: Carried) -> None:
        self._firm_id = carried.firm_id
        self._revision = carried.revision
        self._content = carried.content
        self._offer = carried.offer
        self._phase = Phase.AWARDED
        self._stages[ReviewStage.MILESTONE] = carried.milestone_stage
        for task in carried.tasks:
            self._tasks[task.task_id] = task
        self._profiles = dict(carried.profiles)
        # Separation of duties outlives the run: the review stages' deciders stay listed.
        for reviewer, stage in carried.committed.items():
            if reviewer not in self._stages[stage].reviewers:
                self._stages[stage].reviewers.append(reviewer)
        self._cause = uuid.UUID(carried.cause) if carried.cause else None

    def _offer_or_fail(self) -> OfferView:
        assert self._offer is not None
        return self._offer

    async def _staff_milestones(self) -> None:
        """Give each unassigned milestone report to an eligible reviewer (a verification task)."""
        assert self._firm_id is not None
        assert self._content is not None
        try:
            candidates = await self._candidates(policy.STAGE_ROLES[ReviewStage.MILESTONE])
        except ActivityError as exc:
            workflow.logger.warning("review desk unavailable; retrying later: %s", exc)
            candidates = []
        for profile in candidates:
            self._profiles[profile.reviewer_id] = profile
        offer = self._offer_or_fail()
        stage = self._stages.setdefault(
            ReviewStage.MILESTONE, StageState(stage=ReviewStage.MILESTONE)
        )
        for milestone in offer.milestones:
            if milestone.status is not MilestoneStatus.REPORTED or milestone.task_id is not None:
                continue
            reviewer = staffing.milestone_verifier(
                candidates, self._stages, self._organisations(), milestone.reported_by
            )
            if reviewer is None:
                workflow.logger.info("no eligible milestone verifier yet")
                with contextlib.suppress(TimeoutError):
                    await workflow.wait_condition(
                        lambda: self._phase.ended or self._withdrawal is not None,
                        timeout=timedelta(minutes=self._policy.assignment_retry_minutes),
                        timeout_summary="assignment-retry",
                    )
                return
            now = workflow.now()
            round_ = offer.milestones.index(milestone) + 1
            self._cause = uuid.UUID(milestone.event_id)
            self._assign(ReviewStage.MILESTONE, reviewer, now, round_=round_)
            task = self._tasks[
                policy.task_id(self._app_id, ReviewStage.MILESTONE, reviewer, round_)
            ]
            milestone.task_id = task.task_id
            if reviewer not in stage.reviewers:
                stage.reviewers.append(reviewer)
            stage.status = StageStatus.OPEN
        await self._flush()

    def _milestone_decided(self, task: Task) -> None:
        """A reviewer decided a milestone task (from the update handler)."""
        offer = self._offer_or_fail()
        milestone = next(m for m in offer.milestones if m.task_id == task.task_id)
        verified = task.decision is Decision.APPROVE
        milestone.status = MilestoneStatus.VERIFIED if verified else MilestoneStatus.REJECTED
        milestone.reviewer_id = task.reviewer_id
        milestone.comment = task.comment
        milestone.decided_at = task.decided_at
        if not self._open_tasks((ReviewStage.MILESTONE,)):
            self._stages[ReviewStage.MILESTONE].status = StageStatus.PENDING
        self._queue(offering.milestone_decided(self._app_id, milestone, self._cause))
        if verified:
            tranche = next(t for t in offer.tranches if t.sequence == milestone.sequence)
            tranche.status = TrancheStatus.RELEASED
            self._queue(
                offering.release_tranche(
                    self._app_id,
                    offer,
                    milestone.sequence,
                    approved_by=task.reviewer_id,
                    evidence=f"{milestone.summary} Evidence: {', '.join(milestone.evidence)}.",
                    actor=Actor(kind=ActorKind.REVIEWER, id=task.reviewer_id),
                    cause=self._cause,
                )
            )

    # --- facts from the firm and the services ----------------------------------------------------

    def _reserved(self) -> bool:
        """The space is held (or refused) and the grant reserved (or short): the offer can go."""
        offer = self._offer_or_fail()
        if self._phase.ended:
            return True
        space = offer.allocation_id is None or bool(offer.unavailable) or self._space_held()
        budget = offer.award_id is None or offer.award_opened
        return space and budget

    def _space_held(self) -> bool:
        assert self._content is not None
        offer = self._offer_or_fail()
        held: dict[str, int] = {}
        for units in offer.held:
            held[units.unit_type.value] = held.get(units.unit_type.value, 0) + units.quantity
        return all(
            held.get(r.unit_type.value, 0) >= r.quantity
            for r in self._content.incentives.zone_space
        )

    async def _wait_facts(self, done: Callable[[], bool], within: timedelta | None = None) -> bool:
        """Apply facts as they arrive until ``done`` holds; False on timeout or when the
        application ended (withdrawn, cancelled, compensated) meanwhile."""
        deadline = workflow.now() + within if within is not None else None
        while True:
            self._apply_facts()
            if self._phase.ended:
                await self._flush()
                return False
            if self._withdrawal is not None or self._cancellation is not None:
                self._end_after_approval()
                await self._flush()
                return False
            if self._refusal is not None:
                # A history recorded before refusals were heard ignored the signal.
                if workflow.patched(REFUSAL_PATCH):
                    self._end_refused(self._refusal)
                    await self._flush()
                    return False
                self._refusal = None
            if done():
                return True
            await self._flush()
            remaining = deadline - workflow.now() if deadline is not None else None
            if remaining is not None and remaining <= timedelta(0):
                return False
            try:
                await workflow.wait_condition(
                    lambda: (
                        bool(self._facts)
                        or bool(self._outbox)
                        or self._withdrawal is not None
                        or self._cancellation is not None
                        or self._refusal is not None
                        or done()
                    ),
                    timeout=remaining,
                    timeout_summary="offer-expiry" if remaining is not None else None,
                )
            except TimeoutError:
                self._apply_facts()
                return done() and not self._phase.ended

    def _apply_facts(self) -> None:
        while self._facts:
            self._apply(self._facts.pop(0))

    def _apply(self, fact: FactSignal) -> None:
        """Record one fact in the offer; facts about other allocations or awards are ignored."""
        offer = self._offer
        if offer is None:
            return
        payload = payload_model(fact.type).model_validate(fact.payload)
        match payload:
            case ZoneHeld() if payload.allocation_id == offer.allocation_id:
                offer.held.extend(payload.units)
            case ZoneWaitlisted() if payload.allocation_id == offer.allocation_id:
                offer.waitlisted = True
            case ZoneRefused() if payload.allocation_id == offer.allocation_id:
                assert self._content is not None
                offer.unavailable = list(self._content.incentives.zone_space)
            case ZoneAllocated() if payload.allocation_id == offer.allocation_id:
                offer.allocated.extend(payload.units)
            case AwardOpened() if payload.award_id == offer.award_id:
                offer.award_opened = True
                offer.budget_id = payload.budget_id
            case AwardCharged() if payload.award_id == offer.award_id:
                offer.budget_id = payload.budget_id
            case BudgetExhausted() if payload.award_id == offer.award_id:
                self._cause = uuid.UUID(fact.event_id)
                then = (
                    "the award is cancelled"  # charged to the acceptance year's budget
                    if offer.award_opened
                    else "the application waits for budget"
                )
                self._compensate(
                    CompensationReason.BUDGET_EXHAUSTED,
                    f"The {payload.budget_id} budget has {payload.available.amount} "
                    f"{payload.available.currency} left, short of the {payload.requested.amount} "
                    f"{payload.requested.currency} grant; {then}.",
                    Actor.system(WORKFLOW_ACTOR),
                )
            case TrancheReleased() if payload.award_id == offer.award_id:
                tranche = self._tranche(payload.sequence)
                if not self._paid_already(tranche):
                    tranche.status = TrancheStatus.RELEASED
            case TranchePaid() if payload.award_id == offer.award_id:
                tranche = self._tranche(payload.sequence)
                tranche.status = TrancheStatus.PAID
                tranche.paid_at = payload.paid_at
                self._cause = uuid.UUID(fact.event_id)
                if offering.next_tranche(offer) is None and self._phase is Phase.AWARDED:
                    assert self._firm_id is not None
                    self._queue(
                        offering.award_completed(
                            self._app_id, self._firm_id, offer, workflow.now(), self._cause
                        )
                    )
                    self._phase = Phase.COMPLETED
            case TrancheFailed() if payload.award_id == offer.award_id:
                tranche = self._tranche(payload.sequence)
                if not payload.retryable and not self._paid_already(tranche):
                    tranche.status = TrancheStatus.FAILED
            case OfferAccepted() | OfferDeclined() if payload.offer_id == offer.offer_id:
                if self._answer is None and self._phase is Phase.OFFERED:
                    self._answer = fact
            case MilestoneReported():
                self._reported(fact, payload)

    @staticmethod
    def _paid_already(tranche: TrancheView) -> bool:
        """Whether a fact about ``tranche`` came after its payment, and so changes nothing.

        Facts reach the run in the order the bridge forwards them, which a broker's restart
        or a redelivery can change: a release seen after the payment once left a paid tranche
        ``released``, and the award never completed.
        """
        return tranche.status is TrancheStatus.PAID and workflow.patched(TRANCHE_ORDER_PATCH)

    def _tranche(self, sequence: int) -> TrancheView:
        return next(t for t in self._offer_or_fail().tranches if t.sequence == sequence)

    def _reported(self, fact: FactSignal, report: MilestoneReported) -> None:
        """Take a milestone report for the next unpaid tranche, unless one is being verified."""
        offer = self._offer_or_fail()
        if self._phase is not Phase.AWARDED:
            return
        if any(m.report_id == report.report_id for m in offer.milestones):
            return
        if any(m.status is MilestoneStatus.REPORTED for m in offer.milestones):
            return
        due = next((t for t in offer.tranches if t.status is TrancheStatus.SCHEDULED), None)
        if due is None or due.sequence != report.sequence:
            return
        offer.milestones.append(
            Milestone(
                report_id=report.report_id,
                sequence=report.sequence,
                summary=report.summary,
                evidence=list(report.evidence),
                reported_by=fact.actor_id,
                reported_at=report.reported_at,
                event_id=fact.event_id,
            )
        )

    # --- compensation (the saga) -----------------------------------------------------------------

    def _end_after_approval(self) -> None:
        """A withdrawal or an administrative cancellation after the committee."""
        if self._withdrawal is not None:
            signal = self._withdrawal
            self._cause = uuid.UUID(signal.event_id)
            self._compensate(
                CompensationReason.APPLICATION_WITHDRAWN,
                f"The firm withdrew the application: {signal.reason}",
                offering.actor_of(signal.actor_id),
            )
        elif self._cancellation is not None:
            cancel = self._cancellation
            self._cause = uuid.UUID(cancel.event_id)
            self._compensate(
                CompensationReason.ADMINISTRATIVE,
                f"An administrator cancelled the application: {cancel.reason}",
                offering.actor_of(cancel.actor_id, ActorKind.ADMIN.value),
            )

    def _end_refused(self, refusal: RefusalSignal) -> None:
        """A command was dead-lettered: undo what the others did and tell the firm why."""
        self._cause = uuid.UUID(refusal.event_id)
        self._compensate(
            CompensationReason.COMMAND_REFUSED,
            offering.refusal_reason(refusal.command_type, refusal.error),
            Actor.system(WORKFLOW_ACTOR),
        )

    def _compensate(self, reason_code: CompensationReason, reason: str, actor: Actor) -> None:
        """Release the space and cancel the award, then record the compensation and the end."""
        offer = self._offer_or_fail()
        assert self._firm_id is not None
        release_space = offer.allocation_id is not None and not offer.space_released
        # Once award.open is sent the award is cancelled, opened or not yet: both commands travel
        # on the application's partition, so the cancellation follows the opening.
        # A shortfall before the award opened reserved nothing; one when it was charged to the
        # acceptance year's budget leaves the reservation where it was, to be given back.
        cancel_award = offer.award_id is not None and (
            reason_code is not CompensationReason.BUDGET_EXHAUSTED or offer.award_opened
        )
        if release_space:
            offer.space_released = True
            self._queue(
                offering.release_space(
                    self._app_id, reason_code, reason, actor, self._cause, offer.funding_round
                )
            )
        if cancel_award:
            self._queue(
                offering.cancel_award(
                    self._app_id,
                    offer,
                    reason_code,
                    reason,
                    actor,
                    self._cause,
                    offer.funding_round,
                )
            )
            for tranche in offer.tranches:
                if tranche.status is TrancheStatus.SCHEDULED:
                    tranche.status = TrancheStatus.CANCELLED
        self._cancel_open_tasks(reason, stages=(ReviewStage.MILESTONE,))
        self._queue(
            offering.compensated(
                self._app_id,
                self._firm_id,
                reason_code,
                reason,
                space_released=release_space,
                award_cancelled=cancel_award,
                actor=actor,
                now=workflow.now(),
                cause=self._cause,
                round_=offer.funding_round,
                waitlisted=reason_code is CompensationReason.BUDGET_EXHAUSTED and not cancel_award,
            )
        )
        offer.compensation = reason
        self._phase = offering.OUTCOMES[reason_code]
        self._reasons = [reason]

    # --- publishing ----------------------------------------------------------------------------

    def _event_id(self, step: str) -> uuid.UUID:
        return deterministic_event_id(workflow.info().workflow_id, step)

    def _queue(self, event: events.Event) -> uuid.UUID:
        """Queue an event for :meth:`_flush`; returns its deterministic id.

        Handlers queue, only the main coroutine publishes, so events leave in the order the
        transitions happened.
        """
        envelope = make_envelope(
            event.type,
            event.payload,
            subject=self._app_id,
            actor=event.actor,
            producer=PRODUCER,
            correlation_id=uuid.UUID(self._input.correlation_id),
            causation_id=event.causation,
            event_id=self._event_id(event.step),
            occurred_at=event.occurred_at or workflow.now(),
        )
        self._outbox.append(envelope)
        return envelope.event_id

    async def _flush(self) -> None:
        """Publish the queued events in order through the publish activity.

        A retried activity, or a replayed workflow, republishes the same event ids.
        """
        while self._outbox:
            envelope = self._outbox[0]
            await workflow.execute_activity_method(
                Publisher.publish_message,
                OutgoingMessage(
                    topic=topic_for_type(envelope.type).name,
                    key=envelope.subject,
                    value=encode(envelope).decode(),
                    headers=[(k, v.decode()) for k, v in envelope.headers()],
                ),
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=PUBLISH_RETRY,
            )
            self._outbox.pop(0)
