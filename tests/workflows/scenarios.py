"""Workflow scenarios shared by the time-skipping tests and the history recorder.

A :class:`Harness` runs ``IncentiveApproval`` on a worker whose activities are fakes registered
under the real names: ``publish_message`` records what the workflow published and
``candidate_reviewers`` answers from an in-memory reviewer registry (the demo roster of
plan/ISSUE4.md). Scenarios drive a run the way the bridge and the desk would: signals for Kafka
facts, the ``decide`` update for reviewers, and the test server's clock for the SLA timers.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel
from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from contracts.catalog import decode, example_payloads, message_type_of
from contracts.envelope import Envelope, deterministic_event_id
from contracts.money import Money
from contracts.v1.applications import ApplicationContent, ApplicationSubmitted, ParentCompany
from contracts.v1.common import (
    Decision,
    EligibilityOutcome,
    FastTrackDeclined,
    ReviewStage,
    ZoneUnits,
)
from contracts.v1.desk import (
    ReviewDecisionOutcome,
    ReviewDecisionRequest,
    ReviewerProfile,
    TaskReassignment,
)
from contracts.v1.desk import ReviewerRole as R
from contracts.v1.disbursement import (
    AwardCharged,
    AwardOpened,
    BudgetExhausted,
    TranchePaid,
    TrancheReleased,
)
from contracts.v1.eligibility import EligibilityAssessed, RuleResult
from contracts.v1.offers import MilestoneReported, OfferAccepted
from contracts.v1.zones import ZoneHeld
from workflows.activities import CandidateQuery, OutgoingMessage
from workflows.approval import IncentiveApproval
from workflows.inputs import (
    AmendedSignal,
    ApprovalInput,
    ApprovalPolicy,
    CancellationSignal,
    EligibilitySignal,
    FactSignal,
    RefusalSignal,
    SubmittedSignal,
    WithdrawalSignal,
)
from workflows.state import ApprovalState, Phase, Task, TaskStatus, TrancheStatus

TASK_QUEUE = "test-incentive-approval"
FIRM_ID = "ACME"
FIRM_USER = "alice@acme.example"

Handle = WorkflowHandle[IncentiveApproval, ApprovalState]


def _profile(reviewer_id: str, name: str, roles: Sequence[R], **kw: Any) -> ReviewerProfile:
    return ReviewerProfile(reviewer_id=reviewer_id, name=name, roles=list(roles), **kw)


TANAKA = "rev.tanaka@gaip.example"
SILVA = "rev.silva@gaip.example"
HADDAD = "rev.haddad@gaip.example"
OKAFOR = "rev.okafor@gaip.example"
NOVAK = "rev.novak@gaip.example"
DUBOIS = "rev.dubois@gaip.example"
KIM = "rev.kim@gaip.example"
MEYER = "sup.meyer@gaip.example"
WEBER = "rev.weber@gaip.example"

#: The demo registry. Novak owns shares of the example firm's parent (a conflict), so the
#: assignment picks Tanaka for technical and Silva for security.
ROSTER: tuple[ReviewerProfile, ...] = (
    _profile(TANAKA, "Dr. Aiko Tanaka", [R.TECHNICAL, R.COMMITTEE], affiliations=["Kyoto U"]),
    _profile(SILVA, "Marta Silva", [R.SECURITY, R.COMMITTEE], affiliations=["CNPD"]),
    _profile(HADDAD, "Karim Haddad", [R.FINANCE, R.COMMITTEE]),
    _profile(OKAFOR, "Ngozi Okafor", [R.COMMITTEE]),
    _profile(
        NOVAK,
        "Petr Novak",
        [R.TECHNICAL, R.SECURITY, R.COMMITTEE],
        ownership_interests=["Acme Holdings SE"],
    ),
    _profile(DUBOIS, "Claire Dubois", [R.COMMITTEE]),
    _profile(KIM, "Min-jun Kim", [R.COMMITTEE]),
    _profile(MEYER, "Anna Meyer", [R.SUPERVISOR]),
    # Verifies milestones: a technical reviewer who took no review stage of the application.
    _profile(WEBER, "Jonas Weber", [R.TECHNICAL]),
)
PROFILES = {p.reviewer_id: p for p in ROSTER}
#: Who the deterministic choice yields with the roster above (committee: sorted ids).
COMMITTEE = [DUBOIS, KIM, OKAFOR]


# How long the harness waits for the workflow to get somewhere. It outlasts the test server's
# 10 s workflow task timeout, after which a task it lost (around a continue-as-new, or on a
# loaded host) is handed out again.
WAIT = 60.0
# One query attempt of ``Harness.until``: a lost query is asked again, not awaited forever.
QUERY_ATTEMPT = timedelta(seconds=5)


@dataclass
class RecordingPublisher:
    """Stands in for the Kafka publisher: keeps what the workflow published."""

    messages: list[OutgoingMessage] = field(default_factory=list)

    @activity.defn(name="publish_message")
    async def publish_message(self, message: OutgoingMessage) -> None:
        self.messages.append(message)

    def envelopes(self, application_id: str, *types: str) -> list[Envelope[Any]]:
        """The decoded events about ``application_id``, optionally of the given types only."""
        decoded = [decode(m.value.encode()) for m in self.messages]
        return [
            e for e in decoded if e.subject == application_id and (not types or e.type in types)
        ]


@dataclass
class FakeDesk:
    """Stands in for the review desk's candidates endpoint."""

    profiles: list[ReviewerProfile] = field(default_factory=lambda: list(ROSTER))
    failing: set[R] = field(default_factory=set)
    calls: list[CandidateQuery] = field(default_factory=list)
    #: While set and not yet released, every call waits on it (a desk that does not answer).
    answer: asyncio.Event | None = None

    @activity.defn(name="candidate_reviewers")
    async def candidate_reviewers(self, query: CandidateQuery) -> list[ReviewerProfile]:
        self.calls.append(query)
        if self.answer is not None:
            await self.answer.wait()
        if query.role in self.failing:
            raise ApplicationError("desk refused", type="DeskRefused", non_retryable=True)
        # Unlike the real desk, inactive reviewers are listed too: the workflow must skip them.
        return [p for p in self.profiles if query.role in p.roles]


def content(parents: Sequence[str] = ("Acme Holdings SE",)) -> ApplicationContent:
    """The contract's example application, with the given parent companies."""
    example = example_payloads("application.submitted")[0]
    assert isinstance(example, ApplicationSubmitted)
    base = example.content
    firm = base.firm.model_copy(
        update={
            "parent_companies": [
                ParentCompany(legal_name=name, country="DE", ownership_pct="60")  # type: ignore[arg-type]
                for name in parents
            ]
        }
    )
    return base.model_copy(update={"firm": firm})


def assessment(
    application_id: str,
    outcome: EligibilityOutcome,
    revision: int = 1,
    missing: Sequence[str] = (),
) -> EligibilityAssessed:
    """An eligibility decision for ``application_id`` built from the contract's example."""
    example = example_payloads("eligibility.assessed")[0]
    assert isinstance(example, EligibilityAssessed)
    results = [
        RuleResult(rule_id="priority_sector", passed=True, explanation="Health is a priority."),
        RuleResult(
            rule_id="minimum_investment",
            passed=outcome is not EligibilityOutcome.INELIGIBLE,
            explanation="The investment commitment must be at least EUR 1,000,000.",
        ),
    ]
    if outcome is EligibilityOutcome.NEEDS_INFORMATION and not missing:
        missing = ["commitments.data_protection_attestation"]
    return example.model_copy(
        update={
            "application_id": application_id,
            "application_revision": revision,
            "outcome": outcome,
            "rule_results": results,
            "missing_fields": list(missing),
        }
    )


def eligibility(application_id: str, outcome: EligibilityOutcome, **kw: Any) -> EligibilitySignal:
    """The bridge's signal for a fresh ``eligibility.assessed`` event."""
    return EligibilitySignal(
        event_id=str(uuid.uuid4()), assessment=assessment(application_id, outcome, **kw)
    )


def amendment(revision: int = 2, parents: Sequence[str] = ("Acme Holdings SE",)) -> AmendedSignal:
    """The bridge's signal for a fresh ``application.amended`` event."""
    return AmendedSignal(
        event_id=str(uuid.uuid4()),
        firm_id=FIRM_ID,
        revision=revision,
        content=content(parents),
        actor_id="alice@acme.example",
    )


def withdrawal(reason: str = "Plans changed.") -> WithdrawalSignal:
    """The bridge's signal for a firm's ``application.withdrawn`` event."""
    return WithdrawalSignal(event_id=str(uuid.uuid4()), reason=reason, actor_id=FIRM_ID)


@dataclass
class Harness:
    """A running test worker plus the helpers scenarios use to drive and observe runs."""

    client: Client
    env: WorkflowEnvironment
    task_queue: str
    publisher: RecordingPublisher
    desk: FakeDesk
    handles: list[Handle] = field(default_factory=list)

    async def start(
        self,
        application_id: str | None = None,
        *,
        policy: ApprovalPolicy | None = None,
        parents: Sequence[str] = ("Acme Holdings SE",),
        signal: str = "submitted",
        argument: Any = None,
    ) -> Handle:
        """Start the workflow as the bridge does, with a fact as the start signal."""
        application_id = application_id or f"app_{uuid.uuid4().hex[:12]}"
        if argument is None:
            argument = SubmittedSignal(
                event_id=str(uuid.uuid4()),
                firm_id=FIRM_ID,
                revision=1,
                content=content(parents),
            )
        handle: Handle = await self.client.start_workflow(
            IncentiveApproval.run,
            ApprovalInput(
                application_id=application_id,
                correlation_id=str(uuid.uuid4()),
                policy=policy or ApprovalPolicy(),
            ),
            id=application_id,
            task_queue=self.task_queue,
            start_signal=signal,
            start_signal_args=[argument],
        )
        self.handles.append(handle)
        return handle

    async def state(self, handle: Handle) -> ApprovalState:
        """The ``state`` query of the application's latest run (as the services ask it: by id).

        ``handle`` names the first run; once the workflow continued as new, that run is closed
        and a query to it would be answered by replaying its history.
        """
        latest = self.client.get_workflow_handle(handle.id)
        return await latest.query(IncentiveApproval.state, rpc_timeout=QUERY_ATTEMPT)

    async def until(
        self, handle: Handle, check: Callable[[ApprovalState], bool], timeout: float = WAIT
    ) -> ApprovalState:
        """Poll the ``state`` query until ``check`` holds (the clock stays where it is).

        Each query is one bounded attempt: a query task the test server lost (the worker's late
        answer logs "Task not found when completing") is asked again, not awaited forever.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            try:
                state: ApprovalState | None = await self.state(handle)
            except RPCError as exc:
                if exc.status is not RPCStatusCode.DEADLINE_EXCEEDED and "Timeout" not in str(exc):
                    raise
                state = None  # a loaded host did not answer in time: not yet
            if state is not None and check(state):
                return state
            if loop.time() > deadline:
                raise AssertionError(f"state never satisfied the check: {state}")
            await asyncio.sleep(0.05)

    async def until_open(self, handle: Handle, *stages: ReviewStage) -> ApprovalState:
        """Wait until ``stages`` accept decisions and every queued event is published."""
        state = await self.until(handle, lambda s: set(stages) <= set(s.open_stages))
        await self.until_published(handle, state)
        return state

    async def until_published(self, handle: Handle, state: ApprovalState) -> None:
        """Wait until the assignments of ``state`` are out (the outbox drains after the update)."""
        wanted = {t.task_id for t in state.tasks}

        async def published() -> bool:
            seen = {
                e.payload.task_id
                for e in self.publisher.envelopes(state.application_id, "review.task_assigned")
            }
            return wanted <= seen

        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT
        while not await published():
            if loop.time() > deadline:
                raise AssertionError("assignments were not published")
            await asyncio.sleep(0.05)

    async def decide(
        self,
        handle: Handle,
        reviewer: str,
        stage: ReviewStage,
        decision: Decision = Decision.APPROVE,
        *,
        comment: str | None = None,
        request_id: str | None = None,
        task_id: str | None = None,
        roles: Sequence[R] | None = None,
        fields: Sequence[str] = (),
        fast_track_declined: Sequence[FastTrackDeclined] = (),
        supervisor: ReviewerProfile | None = None,
    ) -> ReviewDecisionOutcome:
        """Send the ``decide`` update as the desk would for ``reviewer`` (with ``supervisor``:
        a supervisor's decision in the place of the task's reviewer)."""
        if task_id is None:
            task = open_task(await self.state(handle), reviewer, stage)
            task_id = task.task_id if task else "task_none"
        request = ReviewDecisionRequest(
            request_id=request_id or f"dec_{uuid.uuid4().hex[:10]}",
            task_id=task_id,
            stage=stage,
            reviewer_id=reviewer,
            token_roles=list(roles if roles is not None else self.roles_of(reviewer)),
            decision=decision,
            comment=comment or f"{decision.value} by {reviewer}",
            requested_fields=list(fields),
            fast_track_declined=list(fast_track_declined),
            supervisor=supervisor,
        )
        return await handle.execute_update(IncentiveApproval.decide, request)

    def roles_of(self, reviewer: str) -> list[R]:
        """The reviewer's roles in the (fake) registry, as the desk would send them."""
        return next((p.roles for p in self.desk.profiles if p.reviewer_id == reviewer), [])

    async def approve_all(self, handle: Handle) -> ApprovalState:
        """Approve every stage with the reviewers the roster yields.

        The run is then approved and has asked the zones to hold the space and disbursement to
        reserve the grant; the state is returned once those commands are out.
        """
        await self.reach_quorum(handle)
        return await self.until_approved(handle)

    async def until_approved(self, handle: Handle) -> ApprovalState:
        """Wait until the approval and the hold and reservation it causes are published."""
        await self.until_published_type(handle, "award.open")
        return await self.state(handle)

    async def until_published_type(
        self, handle: Handle, message_type: str, count: int = 1
    ) -> list[Envelope[Any]]:
        """Wait until ``count`` messages of ``message_type`` about the run are published."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT
        while True:
            found = self.publisher.envelopes(handle.id, message_type)
            if len(found) >= count:
                return found
            if loop.time() > deadline:
                raise AssertionError(f"{message_type} was not published {count} time(s)")
            await asyncio.sleep(0.05)

    async def until_continued(self, handle: Handle, run_id: str) -> str:
        """Wait until the workflow's latest run is no longer ``run_id``; returns the new run id."""
        latest = self.client.get_workflow_handle(handle.id)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT
        while True:
            current = (await latest.describe()).run_id
            if current is not None and current != run_id:
                return current
            if loop.time() > deadline:
                raise AssertionError(f"run {run_id} never continued as new")
            await asyncio.sleep(0.05)

    async def fact(self, handle: Handle, payload: BaseModel, actor_id: str = "system:zones") -> str:
        """Deliver a fact as the bridge would (the ``fact`` signal); returns its event id."""
        event_id = str(uuid.uuid4())
        kind = "firm" if not actor_id.startswith("system:") else "system"
        await handle.signal(
            IncentiveApproval.fact,
            FactSignal(
                event_id=event_id,
                type=message_type_of(payload),
                actor_id=actor_id,
                actor_kind=kind,
                payload=payload.model_dump(mode="json"),
            ),
        )
        return event_id

    async def held_and_reserved(self, handle: Handle) -> None:
        """The zones hold all the requested space and disbursement opens the award."""
        await self.held(handle)
        await self.award_opened(handle)

    async def held(self, handle: Handle, count: int = 1) -> Envelope[Any]:
        """The zones hold all the space the ``count``-th ``zone.hold`` asked for."""
        hold = (await self.until_published_type(handle, "zone.hold", count))[count - 1]
        units = [
            ZoneUnits(
                zone_id=(r.preferred_zones or ["zone-north-tech-park"])[0],
                unit_type=r.unit_type,
                quantity=r.quantity,
            )
            for r in hold.payload.requests
        ]
        now = datetime.now(UTC)
        await self.fact(
            handle,
            ZoneHeld(
                allocation_id=hold.payload.allocation_id,
                application_id=handle.id,
                units=units,
                expires_at=now + timedelta(days=15),
                from_waitlist=False,
                held_at=now,
            ),
        )
        return hold

    async def award_opened(self, handle: Handle, budget_id: str | None = None) -> None:
        """Disbursement reserved the grant: the award the run asked for is open, charged to
        ``budget_id`` (default: the budget the run named; a new fiscal year's budget may open
        an award that waited for last year's)."""
        (award,) = await self.until_published_type(handle, "award.open")
        a = award.payload
        await self.fact(
            handle,
            AwardOpened(
                award_id=a.award_id,
                application_id=handle.id,
                firm_id=a.firm_id,
                budget_id=budget_id or a.budget_id,
                total=a.total,
                tranches=a.tranches,
                opened_at=datetime.now(UTC),
            ),
            actor_id="system:disbursement",
        )

    async def budget_short(self, handle: Handle) -> None:
        """Disbursement cannot reserve the grant: the budget has EUR 1,000 left."""
        (award,) = await self.until_published_type(handle, "award.open")
        await self.fact(
            handle,
            BudgetExhausted(
                budget_id=award.payload.budget_id,
                award_id=award.payload.award_id,
                application_id=handle.id,
                requested=award.payload.total,
                available=Money.of("1000.00", "EUR"),
                detected_at=datetime.now(UTC),
            ),
            actor_id="system:disbursement",
        )

    async def charged(self, handle: Handle) -> None:
        """Disbursement moved the reservation to the budget the ``award.charge`` names."""
        (charge,) = await self.until_published_type(handle, "award.charge")
        award = self.publisher.envelopes(handle.id, "award.open")[0].payload
        await self.fact(
            handle,
            AwardCharged(
                award_id=award.award_id,
                application_id=handle.id,
                from_budget_id=award.budget_id,
                budget_id=charge.payload.budget_id,
                amount=award.total,
                charged_at=datetime.now(UTC),
            ),
            actor_id="system:disbursement",
        )

    async def offered(self, handle: Handle) -> Envelope[Any]:
        """Approve, hold and reserve: the firm's offer is out."""
        await self.reach_quorum(handle)
        await self.held_and_reserved(handle)
        (offer,) = await self.until_published_type(handle, "application.offer_made")
        return offer

    async def accept(
        self, handle: Handle, offer_id: str, accepted_at: datetime | None = None
    ) -> str:
        """The firm accepts its offer (the bridge forwards application.offer_accepted)."""
        return await self.fact(
            handle,
            OfferAccepted(
                offer_id=offer_id,
                application_id=handle.id,
                firm_id=FIRM_ID,
                # The environment's clock: the workflow's own, which a scenario may have skipped.
                accepted_at=accepted_at or await self.env.get_current_time(),
            ),
            actor_id=FIRM_USER,
        )

    async def paid(self, handle: Handle, sequence: int) -> None:
        """Disbursement reports the tranche paid, after its release command went out."""
        await self.until_published_type(handle, "tranche.release", sequence)
        await self._tranche_fact(
            handle,
            sequence,
            TranchePaid,
            payment_reference=f"PAY-{sequence}",
            paid_at=datetime.now(UTC),
        )

    async def released(self, handle: Handle, sequence: int) -> None:
        """Disbursement reports the tranche released (sent to the rail)."""
        await self._tranche_fact(handle, sequence, TrancheReleased, released_at=datetime.now(UTC))

    async def _tranche_fact(
        self, handle: Handle, sequence: int, fact: type[BaseModel], **fields: Any
    ) -> None:
        """A fact of disbursement about tranche ``sequence`` of the application's award."""
        award = self.publisher.envelopes(handle.id, "award.open")[0].payload
        amount = next(t.amount for t in award.tranches if t.sequence == sequence)
        payload = fact.model_validate(
            {
                "award_id": award.award_id,
                "application_id": handle.id,
                "sequence": sequence,
                "amount": amount,
                "idempotency_key": f"{award.award_id}:tranche:{sequence}",
                **fields,
            }
        )
        await self.fact(handle, payload, actor_id="system:disbursement")

    async def report(self, handle: Handle, sequence: int, report_id: str | None = None) -> str:
        """The firm reports the milestone of tranche ``sequence`` with one document."""
        report_id = report_id or f"ms_{uuid.uuid4().hex[:8]}"
        await self.fact(
            handle,
            MilestoneReported(
                report_id=report_id,
                application_id=handle.id,
                firm_id=FIRM_ID,
                sequence=sequence,
                summary=f"Milestone {sequence - 1} is met.",
                evidence=[f"doc_{sequence}"],
                reported_at=datetime.now(UTC),
            ),
            actor_id=FIRM_USER,
        )
        return report_id

    async def reach_quorum(self, handle: Handle) -> None:
        """Approve every stage up to the committee's quorum (the run then ends approved)."""
        await self.until_open(handle, ReviewStage.TECHNICAL, ReviewStage.SECURITY)
        await self.decide(handle, TANAKA, ReviewStage.TECHNICAL)
        await self.decide(handle, SILVA, ReviewStage.SECURITY)
        await self.until_open(handle, ReviewStage.FINANCE)
        await self.decide(handle, HADDAD, ReviewStage.FINANCE)
        await self.until_open(handle, ReviewStage.COMMITTEE)
        await self.decide(handle, COMMITTEE[0], ReviewStage.COMMITTEE)
        await self.decide(handle, COMMITTEE[1], ReviewStage.COMMITTEE)

    async def close(self) -> None:
        """Terminate what a test left running, so its timers never move the shared clock.

        Each run is first left to finish its in-flight activities and workflow task: the test
        server keeps the clock locked for work of a run terminated under it, and every later
        test that sleeps would then hang.
        """
        loop = asyncio.get_running_loop()
        for handle in self.handles:
            with suppress(RPCError):
                deadline = loop.time() + 10
                while True:
                    desc = await handle.describe()
                    raw = desc.raw_description
                    busy = raw.pending_activities or raw.HasField("pending_workflow_task")
                    if desc.status is not WorkflowExecutionStatus.RUNNING:
                        break
                    if not busy or loop.time() > deadline:
                        await handle.terminate("test finished")
                        break
                    await asyncio.sleep(0.05)


def open_task(state: ApprovalState, reviewer: str, stage: ReviewStage) -> Task | None:
    """The reviewer's open task on ``stage``, if any."""
    return next(
        (
            t
            for t in state.tasks
            if t.reviewer_id == reviewer and t.stage is stage and t.status is TaskStatus.OPEN
        ),
        None,
    )


@asynccontextmanager
async def harness(
    client: Client,
    env: WorkflowEnvironment,
    task_queue: str = TASK_QUEUE,
    desk: FakeDesk | None = None,
) -> AsyncIterator[Harness]:
    """A worker on ``task_queue`` with the fake activities, torn down cleanly."""
    h = Harness(client, env, task_queue, RecordingPublisher(), desk or FakeDesk())
    async with Worker(
        client,
        task_queue=task_queue,
        workflows=[IncentiveApproval],
        activities=[h.publisher.publish_message, h.desk.candidate_reviewers],
    ):
        try:
            yield h
        finally:
            await h.close()


# --- after the committee -----------------------------------------------------------------------


async def eligible_run(
    h: Harness, application_id: str | None = None, policy: ApprovalPolicy | None = None
) -> Handle:
    """A run whose application passed eligibility: the review starts."""
    handle = await h.start(application_id, policy=policy)
    await handle.signal(
        IncentiveApproval.eligibility_assessed,
        eligibility(handle.id, EligibilityOutcome.ELIGIBLE),
    )
    return handle


async def accepted(h: Harness, handle: Handle) -> ApprovalState:
    """Offer made and accepted; the signing tranche paid."""
    offer = await h.offered(handle)
    await h.accept(handle, offer.payload.offer_id)
    await h.paid(handle, 1)
    return await h.until(
        handle, lambda s: s.offer is not None and s.offer.tranches[0].status is TrancheStatus.PAID
    )


async def verify(
    h: Harness, handle: Handle, sequence: int, decision: Decision = Decision.APPROVE
) -> ApprovalState:
    """The firm reports the milestone of ``sequence``; Weber decides it through ``decide``."""
    await h.report(handle, sequence)
    state = await h.until(handle, lambda s: ReviewStage.MILESTONE in s.open_stages)
    await h.decide(
        handle, WEBER, ReviewStage.MILESTONE, decision, comment=f"{decision.value}: site visit"
    )
    return state


# --- scenarios recorded as histories ----------------------------------------------------------


async def ineligible(h: Harness, application_id: str) -> None:
    handle = await h.start(application_id)
    signal = eligibility(application_id, EligibilityOutcome.INELIGIBLE)
    await handle.signal(IncentiveApproval.eligibility_assessed, signal)
    await handle.signal(IncentiveApproval.eligibility_assessed, signal)  # a redelivery
    await handle.result()


async def full_approval(h: Harness, application_id: str) -> None:
    handle = await h.start(application_id)
    await handle.signal(
        IncentiveApproval.eligibility_assessed,
        eligibility(application_id, EligibilityOutcome.ELIGIBLE),
    )
    await h.approve_all(handle)


async def rejected_at_security(h: Harness, application_id: str) -> None:
    handle = await h.start(application_id)
    await handle.signal(
        IncentiveApproval.eligibility_assessed,
        eligibility(application_id, EligibilityOutcome.ELIGIBLE),
    )
    await h.until_open(handle, ReviewStage.TECHNICAL, ReviewStage.SECURITY)
    await h.decide(
        handle,
        SILVA,
        ReviewStage.SECURITY,
        Decision.REJECT,
        comment="Patient data would be processed outside the country.",
    )
    await handle.result()


async def information_loop_resumed(h: Harness, application_id: str) -> None:
    handle = await h.start(application_id)
    await handle.signal(
        IncentiveApproval.eligibility_assessed,
        eligibility(application_id, EligibilityOutcome.ELIGIBLE),
    )
    await h.until_open(handle, ReviewStage.TECHNICAL, ReviewStage.SECURITY)
    await h.decide(handle, SILVA, ReviewStage.SECURITY)
    await h.decide(
        handle,
        TANAKA,
        ReviewStage.TECHNICAL,
        Decision.REQUEST_INFORMATION,
        comment="How many local engineers will the residency train per year?",
        fields=["commitments.training"],
    )
    await h.until(handle, lambda s: s.phase is Phase.INFORMATION_REQUESTED)
    await handle.signal(IncentiveApproval.amended, amendment(2))
    await handle.signal(
        IncentiveApproval.eligibility_assessed,
        eligibility(application_id, EligibilityOutcome.ELIGIBLE, revision=2),
    )
    await h.until_open(handle, ReviewStage.TECHNICAL)
    await h.decide(handle, TANAKA, ReviewStage.TECHNICAL)
    await h.until_open(handle, ReviewStage.FINANCE)
    await h.decide(handle, HADDAD, ReviewStage.FINANCE)
    await h.until_open(handle, ReviewStage.COMMITTEE)
    for member in COMMITTEE[:2]:
        await h.decide(handle, member, ReviewStage.COMMITTEE)
    await handle.result()


async def information_timeout(h: Harness, application_id: str) -> None:
    handle = await h.start(application_id)
    await handle.signal(
        IncentiveApproval.eligibility_assessed,
        eligibility(application_id, EligibilityOutcome.NEEDS_INFORMATION),
    )
    await h.until(handle, lambda s: s.phase is Phase.INFORMATION_REQUESTED)
    await handle.result()  # the time-skipping handle jumps over the 30 days


async def sla_escalated_then_withdrawn(h: Harness, application_id: str) -> None:
    handle = await h.start(application_id)
    await handle.signal(
        IncentiveApproval.eligibility_assessed,
        eligibility(application_id, EligibilityOutcome.ELIGIBLE),
    )
    await h.until_open(handle, ReviewStage.TECHNICAL, ReviewStage.SECURITY)
    await h.env.sleep(timedelta(days=15))
    await h.until(handle, lambda s: all(t.escalated_at for t in s.tasks))
    await h.decide(handle, TANAKA, ReviewStage.TECHNICAL)
    await handle.signal(IncentiveApproval.withdrawn, withdrawal())
    await handle.result()


async def escalated_then_reassigned(h: Harness, application_id: str) -> None:
    """The technical task escalates; the supervisor gives it to Weber, who decides it."""
    handle = await h.start(application_id)
    await handle.signal(
        IncentiveApproval.eligibility_assessed,
        eligibility(application_id, EligibilityOutcome.ELIGIBLE),
    )
    state = await h.until_open(handle, ReviewStage.TECHNICAL, ReviewStage.SECURITY)
    technical = open_task(state, TANAKA, ReviewStage.TECHNICAL)
    assert technical is not None
    await h.env.sleep(timedelta(days=15))
    await h.until(handle, lambda s: all(t.escalated_at for t in s.tasks))
    moved = await handle.execute_update(
        IncentiveApproval.reassign,
        TaskReassignment(
            request_id=f"rea_{application_id}",
            task_id=technical.task_id,
            supervisor_id=MEYER,
            supervisor_roles=[R.SUPERVISOR],
            reviewer=PROFILES[WEBER],
            reason="Dr. Tanaka is on leave.",
        ),
    )
    await h.decide(handle, WEBER, ReviewStage.TECHNICAL, task_id=moved.task_id)
    await handle.signal(IncentiveApproval.withdrawn, withdrawal())
    await handle.result()


async def withdrawn_mid_review(h: Harness, application_id: str) -> None:
    handle = await h.start(application_id)
    await handle.signal(
        IncentiveApproval.eligibility_assessed,
        eligibility(application_id, EligibilityOutcome.ELIGIBLE),
    )
    await h.until_open(handle, ReviewStage.TECHNICAL, ReviewStage.SECURITY)
    await h.decide(handle, TANAKA, ReviewStage.TECHNICAL)
    await handle.signal(IncentiveApproval.withdrawn, withdrawal())
    await handle.result()


async def offer_accepted_to_completion(h: Harness, application_id: str) -> None:
    handle = await eligible_run(h, application_id)
    await accepted(h, handle)
    await verify(h, handle, 2, Decision.REJECT)
    await h.until_published_type(handle, "application.milestone_verified")
    for sequence in (2, 3):
        await verify(h, handle, sequence)
        await h.paid(handle, sequence)
    await handle.result()


async def offered_before_the_year_end(
    h: Harness, application_id: str | None = None
) -> tuple[Handle, str, datetime]:
    """An offer made on 31 December and accepted on 2 January of the next fiscal year.

    The environment's clock is first skipped to the next 31 December, so the default offer
    period spans the year end whenever the test runs. Returns the run, the offer id and the
    acceptance time (the skipped clock).
    """
    now = await h.env.get_current_time()
    eve = datetime(now.year, 12, 31, 12, tzinfo=UTC)
    if now > eve - timedelta(hours=1):
        eve = datetime(now.year + 1, 12, 31, 12, tzinfo=UTC)
    await h.env.sleep(eve - now)
    handle = await eligible_run(h, application_id)
    offer = await h.offered(handle)
    new_year = datetime(eve.year + 1, 1, 2, 9, tzinfo=UTC)
    await h.env.sleep(new_year - await h.env.get_current_time())
    return handle, offer.payload.offer_id, await h.env.get_current_time()


async def accepted_in_the_next_fiscal_year(h: Harness, application_id: str) -> None:
    """The award moves to the budget of the year of acceptance, then the signing is paid."""
    handle, offer_id, accepted_at = await offered_before_the_year_end(h, application_id)
    await h.accept(handle, offer_id, accepted_at)
    await h.charged(handle)
    await h.paid(handle, 1)
    await h.until(
        handle, lambda s: s.offer is not None and s.offer.tranches[0].status is TrancheStatus.PAID
    )
    await h.report(handle, 2)  # a milestone report, so the run is left waiting for its review
    await h.until(handle, lambda s: ReviewStage.MILESTONE in s.open_stages)


async def funded_after_waiting_for_budget(h: Harness, application_id: str) -> None:
    """A shortfall, then a top-up opens the award: the space is held again and offered."""
    handle = await eligible_run(h, application_id)
    await h.reach_quorum(handle)
    await h.held(handle)
    await h.budget_short(handle)
    await h.until(handle, lambda s: s.phase is Phase.UNFUNDED)
    await h.until_published_type(handle, "application.compensated")
    await h.award_opened(handle)  # a top-up reached the award at the head of the waitlist
    await h.held(handle, 2)
    (offer,) = await h.until_published_type(handle, "application.offer_made")
    await h.accept(handle, offer.payload.offer_id)
    await h.paid(handle, 1)
    await h.until(
        handle, lambda s: s.offer is not None and s.offer.tranches[0].status is TrancheStatus.PAID
    )
    await h.report(handle, 2)
    await h.until(handle, lambda s: ReviewStage.MILESTONE in s.open_stages)


async def offer_lapsed(h: Harness, application_id: str) -> None:
    handle = await eligible_run(h, application_id)
    await h.offered(handle)
    await handle.result()  # the time-skipping handle jumps over the offer period


async def budget_shortfall(h: Harness, application_id: str) -> None:
    handle = await eligible_run(h, application_id)
    await h.reach_quorum(handle)
    await h.budget_short(handle)
    await handle.result()


async def withdrawn_during_offer(h: Harness, application_id: str) -> None:
    handle = await eligible_run(h, application_id)
    await h.offered(handle)
    await handle.signal(IncentiveApproval.withdrawn, withdrawal())
    await handle.result()


async def hold_refused(h: Harness, application_id: str) -> None:
    """The zones service dead-lettered the hold: the run compensates and ends cancelled."""
    handle = await eligible_run(h, application_id)
    await h.reach_quorum(handle)
    (hold,) = await h.until_published_type(handle, "zone.hold")
    await h.until_published_type(handle, "award.open")
    await handle.signal(
        IncentiveApproval.command_refused,
        RefusalSignal(
            event_id=str(deterministic_event_id(str(hold.event_id), "command_refused")),
            command_type="zone.hold",
            reason="business_refusal",
            error="No zone offers that unit type.",
            consumer="zones",
        ),
    )
    await handle.result()


async def cancelled_after_acceptance(h: Harness, application_id: str) -> None:
    handle = await eligible_run(h, application_id)
    await accepted(h, handle)
    await handle.signal(
        IncentiveApproval.cancelled,
        CancellationSignal(
            event_id=str(deterministic_event_id(application_id, "test-cancellation")),
            reason="Audit finding.",
            actor_id="admin@gaip.example",
        ),
    )
    await handle.result()


#: Scenario name -> coroutine; the recorder writes one history per scenario.
SCENARIOS: dict[str, Callable[[Harness, str], Awaitable[None]]] = {
    "ineligible": ineligible,
    "full_approval": full_approval,
    "rejected_at_security": rejected_at_security,
    "information_loop_resumed": information_loop_resumed,
    "information_timeout": information_timeout,
    "sla_escalated_then_withdrawn": sla_escalated_then_withdrawn,
    "escalated_then_reassigned": escalated_then_reassigned,
    "withdrawn_mid_review": withdrawn_mid_review,
    "offer_accepted_to_completion": offer_accepted_to_completion,
    "offer_lapsed": offer_lapsed,
    "budget_shortfall": budget_shortfall,
    "withdrawn_during_offer": withdrawn_during_offer,
    "hold_refused": hold_refused,
    "cancelled_after_acceptance": cancelled_after_acceptance,
    "accepted_in_the_next_fiscal_year": accepted_in_the_next_fiscal_year,
    "funded_after_waiting_for_budget": funded_after_waiting_for_budget,
}
