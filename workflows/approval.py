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
from collections.abc import Sequence
from datetime import datetime, timedelta

from pydantic import BaseModel
from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from contracts.catalog import encode, make_envelope
    from contracts.conflicts import Organisation, firm_organisations
    from contracts.envelope import Actor, ActorKind, Envelope, deterministic_event_id
    from contracts.topics import topic_for_type
    from contracts.v1.applications import ApplicationContent
    from contracts.v1.common import Decision, EligibilityOutcome, ReviewStage, Stage
    from contracts.v1.desk import (
        DECIDE_UPDATE,
        ReviewDecisionOutcome,
        ReviewDecisionRequest,
        ReviewerProfile,
        ReviewerRole,
    )
    from workflows import events, policy, staffing
    from workflows.activities import CandidateQuery, OutgoingMessage, Publisher, ReviewDesk
    from workflows.inputs import (
        AmendedSignal,
        ApprovalInput,
        ApprovalPolicy,
        EligibilitySignal,
        SubmittedSignal,
        WithdrawalSignal,
    )
    from workflows.state import (
        ApprovalState,
        DecisionView,
        InformationRequest,
        Phase,
        StageState,
        StageStatus,
        Task,
        TaskStatus,
    )

#: The task queue the worker polls and the bridge starts workflows on.
TASK_QUEUE = "incentive-approval"
#: The named system actor for steps the workflow takes by itself.
WORKFLOW_ACTOR = events.WORKFLOW_ACTOR
#: The named system actor of eligibility decisions the workflow enacts.
ELIGIBILITY_ACTOR = events.ELIGIBILITY_ACTOR
PRODUCER = "workflows"

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
        self._stages: dict[ReviewStage, StageState] = {
            stage: StageState(stage=stage) for stage in ReviewStage
        }
        committee = self._stages[ReviewStage.COMMITTEE]
        committee.required = inp.policy.committee_required
        committee.members = inp.policy.committee_members
        self._tasks: dict[str, Task] = {}
        self._profiles: dict[str, ReviewerProfile] = {}
        self._outcomes: dict[str, ReviewDecisionOutcome] = {}
        self._decisions: list[DecisionView] = []
        self._outbox: list[Envelope[BaseModel]] = []
        self._request: InformationRequest | None = None
        self._requests = 0
        # The event that caused the latest transition: the causation of what follows.
        self._cause: uuid.UUID | None = None

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
        task.status = TaskStatus.DECIDED
        task.request_id = request.request_id
        task.decision = request.decision
        task.comment = request.comment
        task.decided_at = now
        task.requested_fields = list(request.requested_fields)
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
        if request.decision is Decision.REQUEST_INFORMATION:
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
            ),
        )
        if refused is not None:
            raise ApplicationError(refused.message, type=refused.code.value, non_retryable=True)

    # --- the run -------------------------------------------------------------------------------

    @workflow.run
    async def run(self, inp: ApprovalInput) -> ApprovalState:
        """Eligibility, then the review groups in order; ends approved, rejected or withdrawn."""
        if await self._eligibility_stage():
            for phase, stages in policy.REVIEW_GROUPS:
                if not await self._review_group(phase, stages):
                    break
            else:
                self._approve()
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
                marks.append(task.assigned_at + timedelta(days=self._policy.sla_reminder_days))
            if task.escalated_at is None:
                marks.append(task.due_at)
        return min(marks) - workflow.now() if marks else None

    async def _fire_slas(self, stages: Sequence[ReviewStage]) -> None:
        supervisors: list[ReviewerProfile] | None = None
        for task in self._open_tasks(stages):
            now = workflow.now()
            reminder = task.assigned_at + timedelta(days=self._policy.sla_reminder_days)
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
        return await workflow.execute_activity_method(
            ReviewDesk.candidate_reviewers,
            CandidateQuery(role=role, application_id=self._app_id),
            start_to_close_timeout=timedelta(seconds=30),
            schedule_to_close_timeout=DESK_SCHEDULE_TO_CLOSE,
            retry_policy=DESK_RETRY,
        )

    def _assign(self, stage: ReviewStage, reviewer: str, now: datetime) -> None:
        assert self._firm_id is not None
        assert self._content is not None
        round_ = self._requests
        step = events.assignment_step(stage, reviewer, round_)
        task = Task(
            task_id=policy.task_id(self._app_id, stage, reviewer, round_),
            stage=stage,
            reviewer_id=reviewer,
            round=round_,
            assigned_at=now,
            due_at=now + timedelta(days=self._policy.sla_escalation_days),
            assigned_event_id=str(self._event_id(step)),
        )
        self._tasks[task.task_id] = task
        summary = events.summary_of(self._firm_id, self._content)
        self._queue(
            events.task_assigned(self._app_id, task, summary, self._policy.quorum, self._cause)
        )

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
