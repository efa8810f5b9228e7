"""The Kafka→Temporal bridge: facts about an application become workflow signals.

Forwarded: ``application.submitted``, ``application.amended`` (a new revision while information
is requested), ``application.withdrawn`` and ``eligibility.assessed``; an administrator's
``application.cancelled`` as the ``cancelled`` signal (to a running workflow only); after the
committee, the firm's answer to its offer and its milestone reports (``applications.events``),
and what the zones and disbursement services did (``zones.events``, ``disbursement.events``),
each as the workflow's ``fact`` signal. The workflow's own commands that the zones or
disbursement service dead-lettered (``zones.commands.dlq``, ``disbursement.commands.dlq``)
come back to it as the ``command_refused`` signal, with the ``dlq.reason`` and ``dlq.error``
the service gave, so it can compensate and tell the firm (a command is dead-lettered only when
it is final: undecodable, schema-invalid or refused by a rule; a service that cannot reach a
dependency waits instead). Every fact is delivered
with signal-with-start on workflow id = application id, so the first fact to arrive starts the
workflow and later ones only signal it; a redelivered message signals an event id the workflow
has already seen, which it ignores. A fact about an application whose workflow has already
closed is acknowledged and changes nothing. While Temporal does not answer, a forward raises
:class:`~services.kit.errors.DependencyUnavailable` naming ``temporal``: the consumer holds the
partition and retries until it answers, and ``/health`` says what it waits for.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from contracts.envelope import Envelope, deterministic_event_id
from services.kit.consumer import Incoming
from services.kit.dlq import parse_dead_letter
from services.kit.errors import DependencyUnavailable
from services.kit.logging import get_logger
from services.kit.uow import UnitOfWork
from workflows.approval import TASK_QUEUE, IncentiveApproval
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

log = get_logger(__name__)

#: The message types the bridge forwards, by topic.
APPLICATION_TYPES = (
    "application.submitted",
    "application.amended",
    "application.withdrawn",
    "application.offer_accepted",
    "application.offer_declined",
    "application.milestone_reported",
    "application.cancelled",
)
ELIGIBILITY_TYPES = ("eligibility.assessed",)
ZONE_TYPES = ("zone.held", "zone.waitlisted", "zone.refused", "zone.allocated", "zone.hold_expired")
DISBURSEMENT_TYPES = (
    "award.opened",
    "budget.exhausted",
    "tranche.released",
    "tranche.paid",
    "tranche.failed",
    "award.cancelled",
    "award.charged",
)
#: The workflow's commands, read back from the dead-letter twins of their topics.
ZONE_COMMAND_TYPES = ("zone.hold", "zone.confirm", "zone.release")
DISBURSEMENT_COMMAND_TYPES = ("award.open", "tranche.release", "award.cancel", "award.charge")
#: Forwarded as the ``fact`` signal: the workflow validates the payload against the catalog.
FACT_TYPES = frozenset(
    {
        "application.offer_accepted",
        "application.offer_declined",
        "application.milestone_reported",
        *ZONE_TYPES,
        *DISBURSEMENT_TYPES,
    }
)


#: Signals that never start a workflow: later facts and an administrator's cancellation.
_SIGNAL_ONLY = frozenset({"fact", "cancelled"})


def signal_for(envelope: Envelope[Any]) -> tuple[str, BaseModel]:
    """The workflow signal (name and argument) that carries ``envelope``."""
    event_id = str(envelope.event_id)
    payload = envelope.payload
    if envelope.type in FACT_TYPES:
        return "fact", FactSignal(
            event_id=event_id,
            type=envelope.type,
            actor_id=envelope.actor.id,
            actor_kind=envelope.actor.kind.value,
            payload=payload.model_dump(mode="json"),
        )
    match envelope.type:
        case "application.submitted":
            return "submitted", SubmittedSignal(
                event_id=event_id,
                firm_id=payload.firm_id,
                revision=payload.revision,
                content=payload.content,
            )
        case "application.amended":
            return "amended", AmendedSignal(
                event_id=event_id,
                firm_id=payload.firm_id,
                revision=payload.revision,
                content=payload.content,
                in_response_to=payload.in_response_to,
                actor_id=envelope.actor.id,
            )
        case "application.withdrawn":
            return "withdrawn", WithdrawalSignal(
                event_id=event_id, reason=payload.reason, actor_id=envelope.actor.id
            )
        case "application.cancelled":
            return "cancelled", CancellationSignal(
                event_id=event_id, reason=payload.reason, actor_id=envelope.actor.id
            )
        case "eligibility.assessed":
            return "eligibility_assessed", EligibilitySignal(event_id=event_id, assessment=payload)
    raise ValueError(f"the bridge does not forward {envelope.type!r}")


def refusal_for(incoming: Incoming) -> RefusalSignal:
    """The ``command_refused`` signal for a dead-lettered command (its record's ``dlq.*``)."""
    info = parse_dead_letter(incoming.record.headers)
    envelope = incoming.envelope
    return RefusalSignal(
        event_id=str(deterministic_event_id(str(envelope.event_id), "command_refused")),
        command_type=envelope.type,
        reason=info.reason,
        error=info.error,
        consumer=info.consumer,
    )


class Bridge:
    """Forwards facts to ``IncentiveApproval`` workflows through a Temporal client."""

    def __init__(
        self,
        client: Client,
        task_queue: str = TASK_QUEUE,
        policy: ApprovalPolicy | None = None,
    ) -> None:
        self._client = client
        self._task_queue = task_queue
        # Fixed into each new run's input: a later settings change leaves running ones alone.
        self._policy = policy or ApprovalPolicy()

    async def forward(self, envelope: Envelope[Any]) -> WorkflowHandle[Any, Any] | None:
        """Signal-with-start the application's workflow; None when it has already closed."""
        name, argument = signal_for(envelope)
        if name in _SIGNAL_ONLY:
            # Only a running journey takes later facts: they never start a workflow.
            handle = self._client.get_workflow_handle(envelope.subject)
            if not await self._signal_running(envelope.subject, name, argument):
                log.info(
                    "no running workflow; fact not forwarded",
                    application_id=envelope.subject,
                    type=envelope.type,
                )
                return None
            return handle
        try:
            handle = await self._client.start_workflow(
                IncentiveApproval.run,
                ApprovalInput(
                    application_id=envelope.subject,
                    correlation_id=str(envelope.correlation_id),
                    policy=self._policy,
                ),
                id=envelope.subject,
                task_queue=self._task_queue,
                start_signal=name,
                start_signal_args=[argument],
                # One journey per application id: a closed workflow is never started again.
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            )
        except WorkflowAlreadyStartedError:
            log.info(
                "workflow already closed; fact not forwarded",
                application_id=envelope.subject,
                type=envelope.type,
            )
            return None
        return handle

    async def _signal_running(self, application_id: str, name: str, argument: BaseModel) -> bool:
        """Signal a running workflow; False when there is none (never started, or closed)."""
        handle = self._client.get_workflow_handle(application_id)
        try:
            await handle.signal(name, argument)
        except RPCError as exc:
            if exc.status is not RPCStatusCode.NOT_FOUND:
                raise
            return False
        return True

    async def handle(self, incoming: Incoming, _uow: UnitOfWork) -> None:
        """Idempotent-consumer handler: the processed mark commits after the signal landed."""
        try:
            await self.forward(incoming.envelope)
        except RPCError as exc:
            raise _temporal_unavailable(exc) from exc

    async def handle_refusal(self, incoming: Incoming, _uow: UnitOfWork) -> None:
        """A dead-lettered command: tell the workflow named by its subject (if still running)."""
        refusal = refusal_for(incoming)
        envelope = incoming.envelope
        try:
            signalled = await self._signal_running(envelope.subject, "command_refused", refusal)
        except RPCError as exc:
            raise _temporal_unavailable(exc) from exc
        if not signalled:
            log.info(
                "no running workflow; refusal not forwarded",
                application_id=envelope.subject,
                type=envelope.type,
            )


def _temporal_unavailable(exc: RPCError) -> DependencyUnavailable:
    """Temporal did not take the signal: a transient failure the consumer waits out."""
    return DependencyUnavailable(
        f"Temporal did not answer: {exc.status.name if exc.status else 'no status'}: {exc}",
        dependency="temporal",
    )
