"""Point-in-time state from leaves: contracts.status replayed up to an instant."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from contracts import catalog
from contracts.envelope import Envelope
from services.audit.domain.leaves import leaf_bytes
from services.audit.domain.state import NothingLogged, StateView, logged_events, state_as_of
from tests.applications.helpers import event

APP = "app_state"
T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def leaf(envelope: Envelope[Any], topic: str | None = None) -> bytes:
    topic = topic or f"{envelope.type.split('.')[0]}.events"
    return leaf_bytes(
        topic, APP.encode(), [("type", envelope.type.encode())], catalog.encode(envelope)
    )


def journey() -> list[Envelope[Any]]:
    """Submitted, eligible, under review, asked for information, amended, eligible, approved."""
    return [
        event("application.submitted", APP, occurred_at=at(0), revision=1),
        event("eligibility.assessed", APP, occurred_at=at(1), application_revision=1),
        event("review.task_assigned", APP, occurred_at=at(2)),
        event("review.information_requested", APP, occurred_at=at(3)),
        event("application.amended", APP, occurred_at=at(4), revision=2),
        event("eligibility.assessed", APP, occurred_at=at(5), application_revision=2),
        event("review.task_assigned", APP, occurred_at=at(6)),
        event("application.approved", APP, occurred_at=at(7)),
    ]


def rebuilt(
    envelopes: list[Envelope[Any]], as_of: datetime, leaves: list[bytes] | None = None
) -> StateView:
    events, undecodable = logged_events(enumerate(leaves or [leaf(e) for e in envelopes]))
    return state_as_of(APP, events, as_of, tree_size=100, undecodable=undecodable)


@pytest.mark.parametrize(
    ("minute", "status", "revision"),
    [
        (0, "submitted", 1),
        (1, "eligible", 1),
        (2, "under_review", 1),
        (3, "information_requested", 1),
        (4, "submitted", 2),
        (5, "eligible", 2),
        (6, "under_review", 2),
        (7, "approved", 2),
        (60, "approved", 2),
    ],
)
def test_each_instant_has_the_status_of_the_facts_that_had_occurred(
    minute: int, status: str, revision: int
) -> None:
    state = rebuilt(journey(), at(minute))
    assert (state.status, state.revision) == (status, revision)
    assert state.records == min(minute + 1, 8)


def test_nothing_before_the_submission() -> None:
    with pytest.raises(NothingLogged):
        rebuilt(journey(), at(-1))


def test_an_assessment_logged_before_the_amendment_it_judges_still_follows_it() -> None:
    events = journey()
    events[4], events[5] = events[5], events[4]  # consumed from two topics: any order
    assert rebuilt(events, at(5)).status == "eligible"


def test_duplicates_commands_dead_letters_and_garbage_change_nothing() -> None:
    events = journey()
    leaves = [leaf(e) for e in events]
    approved = events[-1]
    leaves.insert(3, leaf(approved, "approvals.events.dlq"))  # a dead letter, earlier
    leaves.append(leaf(events[2]))  # redelivered
    leaves.append(b"not a leaf")
    leaves.append(leaf_bytes("applications.events", APP.encode(), [], b"{not json"))
    state = rebuilt(events, at(6), leaves)
    assert state.status == "under_review"
    assert state.undecodable == 2
    assert state.records == 7


def test_decisions_and_assignments_name_who_and_under_which_rules() -> None:
    state = rebuilt(journey(), at(60))
    assert [(d.stage, d.outcome) for d in state.decisions] == [
        ("eligibility", "eligible"),
        ("eligibility", "eligible"),
        ("final", "approved"),
    ]
    assert state.decisions[0].rule_set_sha256
    assert len(state.assignments) == 2
    assert state.firm_id is not None
