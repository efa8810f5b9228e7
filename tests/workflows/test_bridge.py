"""The Kafka→Temporal bridge: which facts it forwards, as which signals, into which input."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from contracts import catalog
from contracts.catalog import payload_model
from contracts.envelope import Actor, Envelope
from contracts.v1.common import EligibilityOutcome
from services.kit.consumer import Incoming
from services.kit.dlq import ConsumedRecord, dead_letter
from services.kit.errors import DependencyUnavailable, Reason, dependency_of
from tests.workflows.scenarios import Harness, assessment
from workflows.approval import IncentiveApproval
from workflows.bridge import APPLICATION_TYPES, ELIGIBILITY_TYPES, Bridge, signal_for
from workflows.inputs import (
    AmendedSignal,
    ApprovalPolicy,
    CancellationSignal,
    FactSignal,
    SubmittedSignal,
    WithdrawalSignal,
)
from workflows.state import Phase


def envelope(message_type: str, **update: Any) -> Envelope[Any]:
    payload = catalog.example_payloads(message_type)[0].model_copy(update=update)
    return catalog.make_envelope(
        message_type,
        payload,
        subject=payload.application_id,  # type: ignore[attr-defined]
        actor=Actor(kind="firm", id="alice@acme.example", firm_id="ACME"),  # type: ignore[arg-type]
        producer="applications",
        correlation_id=uuid.uuid4(),
    )


def test_forwarded_types() -> None:
    assert APPLICATION_TYPES == (
        "application.submitted",
        "application.amended",
        "application.withdrawn",
        "application.offer_accepted",
        "application.offer_declined",
        "application.milestone_reported",
        "application.cancelled",
    )
    assert ELIGIBILITY_TYPES == ("eligibility.assessed",)


@pytest.mark.parametrize(
    "message_type",
    ["application.offer_accepted", "application.milestone_reported", "zone.held", "tranche.paid"],
)
def test_later_facts_become_the_fact_signal(message_type: str) -> None:
    env = envelope(message_type)
    name, signal = signal_for(env)
    assert name == "fact"
    assert isinstance(signal, FactSignal)
    assert signal.event_id == str(env.event_id)
    assert signal.type == message_type
    assert signal.actor_id == "alice@acme.example"
    assert payload_model(message_type).model_validate(signal.payload) == env.payload


def test_amendments_become_the_amended_signal() -> None:
    env = envelope("application.amended")
    name, signal = signal_for(env)
    assert name == "amended"
    assert isinstance(signal, AmendedSignal)
    assert signal.event_id == str(env.event_id)
    assert signal.revision == 2
    assert signal.in_response_to == "req_5T2W8N"
    assert signal.content == env.payload.content
    assert signal.actor_id == "alice@acme.example"


def test_submissions_carry_the_content() -> None:
    env = envelope("application.submitted")
    name, signal = signal_for(env)
    assert name == "submitted"
    assert isinstance(signal, SubmittedSignal)
    assert signal.content.firm.legal_name == "Acme Vision AI GmbH"


def test_withdrawals() -> None:
    name, signal = signal_for(envelope("application.withdrawn"))
    assert name == "withdrawn"
    assert isinstance(signal, WithdrawalSignal)


def test_an_administrators_cancellation_becomes_the_cancelled_signal() -> None:
    env = catalog.make_envelope(
        "application.cancelled",
        catalog.example_payloads("application.cancelled")[0],
        subject="app_01HZX3Q8W6",
        actor=Actor(kind="admin", id="admin@gaip.example"),  # type: ignore[arg-type]
        producer="applications",
        correlation_id=uuid.uuid4(),
    )
    name, signal = signal_for(env)
    assert name == "cancelled"
    assert signal == CancellationSignal(
        event_id=str(env.event_id),
        reason="The firm's licence was revoked by the regulator.",
        actor_id="admin@gaip.example",
    )


def test_other_types_are_refused() -> None:
    with pytest.raises(ValueError, match="does not forward"):
        signal_for(envelope("review.task_assigned"))


async def test_the_bridge_starts_runs_with_the_configured_policy(
    client: Client, h: Harness
) -> None:
    app_id = f"app_{uuid.uuid4().hex[:12]}"
    bridge = Bridge(client, h.task_queue, ApprovalPolicy(committee_required=3, committee_members=5))
    submitted = envelope("application.submitted", application_id=app_id)
    handle = await bridge.forward(submitted)
    assert handle is not None
    assert await bridge.forward(submitted) is not None, "a redelivery only signals"
    state = await handle.query(IncentiveApproval.state)
    assert state.quorum is not None
    assert (state.quorum.required, state.quorum.members) == (3, 5)
    decision = catalog.make_envelope(
        "eligibility.assessed",
        assessment(app_id, EligibilityOutcome.INELIGIBLE),
        subject=app_id,
        actor=Actor.system("eligibility"),
        producer="eligibility",
        correlation_id=submitted.correlation_id,
    )
    await bridge.forward(decision)
    assert (await handle.result()).phase is Phase.REJECTED
    assert await bridge.forward(decision) is None, "a closed run is never started again"


async def test_a_cancellation_never_starts_a_run(client: Client, h: Harness) -> None:
    app_id = f"app_{uuid.uuid4().hex[:12]}"
    bridge = Bridge(client, h.task_queue)
    cancelled = envelope("application.cancelled", application_id=app_id)
    assert await bridge.forward(cancelled) is None
    with pytest.raises(RPCError):
        await client.get_workflow_handle(app_id).describe()


class _Handle:
    def __init__(self, client: _Client, workflow_id: str) -> None:
        self._client, self._id = client, workflow_id

    async def signal(self, name: str, argument: Any) -> None:
        if self._client.down:
            raise RPCError("connection refused", RPCStatusCode.UNAVAILABLE, b"")
        self._client.signals.append((self._id, name))


class _Client:
    """Records the signals the bridge sends; every workflow is running (unless ``down``)."""

    def __init__(self) -> None:
        self.signals: list[tuple[str, str]] = []
        self.down = False

    def get_workflow_handle(self, workflow_id: str) -> _Handle:
        return _Handle(self, workflow_id)


def _dead_lettered_hold(reason: Reason) -> Incoming:
    hold = envelope("zone.hold")
    original = ConsumedRecord(
        topic="zones.commands",
        partition=0,
        offset=7,
        key=hold.subject.encode(),
        value=hold.model_dump_json().encode(),
        headers=tuple(hold.headers()),
    )
    letter = dead_letter(
        original, reason=reason, error=RuntimeError("no"), consumer="zones", attempts=5
    )
    record = ConsumedRecord(
        topic=letter.topic,
        partition=0,
        offset=0,
        key=letter.key,
        value=letter.value,
        headers=tuple(letter.headers),
    )
    return Incoming(envelope=hold, record=record)


async def test_a_refused_command_is_signalled_and_waits_while_temporal_is_away() -> None:
    client = _Client()
    bridge = Bridge(client, task_queue="unused")  # type: ignore[arg-type]
    refused = _dead_lettered_hold(Reason.BUSINESS_REFUSAL)

    # Temporal away: a transient failure naming it, which the consumer waits out.
    client.down = True
    with pytest.raises(DependencyUnavailable) as caught:
        await bridge.handle_refusal(refused, None)  # type: ignore[arg-type]
    assert dependency_of(caught.value) == "temporal"
    assert client.signals == []

    client.down = False
    await bridge.handle_refusal(refused, None)  # type: ignore[arg-type]
    assert client.signals == [(refused.envelope.subject, "command_refused")]
