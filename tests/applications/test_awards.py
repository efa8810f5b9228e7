"""The offer and award view, fed events directly: idempotent, and in plain words."""

from __future__ import annotations

from typing import Any

from contracts.envelope import Actor, Envelope
from contracts.status import Status
from services.applications.awards import AwardView, project
from services.applications.domain import interpret
from tests.applications.helpers import event

APP = "app_awards_view"


def fold(*envelopes: Envelope[Any]) -> AwardView:
    stored: dict[str, Any] | None = None
    for envelope in envelopes:
        stored = project(stored, envelope)
    assert stored is not None
    return AwardView.model_validate(stored)


def offer() -> Envelope[Any]:
    return event("application.offer_made", APP, actor=Actor.system("workflows"))


def test_nothing_is_shown_before_the_offer() -> None:
    assert project(None, event("tranche.paid", APP)) is None


def test_a_redelivered_event_changes_nothing() -> None:
    made, paid = offer(), event("tranche.paid", APP, sequence=1)
    reported = event("application.milestone_reported", APP, sequence=2)
    once = fold(made, paid, reported)
    twice = fold(made, paid, reported, made, paid, reported)
    assert once == twice
    assert [t.state for t in once.tranches] == ["paid", "scheduled", "scheduled"]
    assert len(once.milestones) == 1
    assert once.next_milestone() is None, "one milestone is being verified"


def test_a_paid_tranche_frees_the_next_milestone_before_its_verification_arrives() -> None:
    """The payment and the verification come on different topics, in either order."""
    reported = event("application.milestone_reported", APP, sequence=2)
    paid_first = fold(offer(), event("tranche.paid", APP, sequence=1), reported)
    assert paid_first.next_milestone() is None
    paid_first = fold(
        offer(),
        event("tranche.paid", APP, sequence=1),
        reported,
        event("tranche.paid", APP, sequence=2),
    )
    assert [m.state for m in paid_first.milestones] == ["reported"]
    assert paid_first.pending_milestone() is None
    assert paid_first.next_milestone() == 3


def test_a_cancelled_award_cancels_what_was_not_paid() -> None:
    view = fold(
        offer(),
        event("tranche.paid", APP, sequence=1),
        event("award.cancelled", APP),
    )
    assert view.award_state == "cancelled"
    assert [t.state for t in view.tranches] == ["paid", "cancelled", "cancelled"]


def test_the_status_follows_the_offer_and_its_end() -> None:
    made = interpret(offer())
    assert made is not None
    assert made.change is not None
    assert made.change.status is Status.OFFERED
    assert made.reasons[0].startswith("Offered: zone space: 4 x gpu_rack_unit in ")
    lapsed = interpret(event("application.offer_lapsed", APP))
    assert lapsed is not None
    assert lapsed.change is not None
    assert lapsed.change.status is Status.OFFER_LAPSED
    unfunded = interpret(event("application.compensated", APP))
    assert unfunded is not None
    assert unfunded.change is not None
    assert unfunded.change.status is Status.UNFUNDED
    assert unfunded.summary == (
        "Compensation: The zone space was released; the application waits for budget."
    )
