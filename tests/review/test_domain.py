"""The desk's pure rules: derived task status, SLA states, refusals and request ids."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from contracts.v1.common import Decision
from contracts.v1.desk import DecisionRefusal
from services.review.domain import (
    REFUSAL_STATUS,
    REFUSAL_TITLE,
    SlaState,
    TaskFacts,
    TaskStatus,
    decision_body_problem,
    decision_request_id,
    parse_refusal,
)

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def day(n: float) -> datetime:
    return T0 + timedelta(days=n)


Fact = Callable[[TaskFacts], tuple[TaskFacts, bool]]


def apply(facts: TaskFacts, *steps: Fact) -> TaskFacts:
    for step in steps:
        facts, _ = step(facts)
    return facts


def assign(at: float, due: float = 14) -> Fact:
    return lambda f: f.assigned(day(at), day(at + due))


def decide(at: float) -> Fact:
    return lambda f: f.decided(day(at))


def remind(at: float) -> Fact:
    return lambda f: f.reminded(day(at))


def escalate(at: float) -> Fact:
    return lambda f: f.escalated(day(at))


def cancel(at: float) -> Fact:
    return lambda f: f.cancelled(day(at))


def close(at: float) -> Fact:
    return lambda f: f.closed(day(at))


def ask(at: float) -> Fact:
    return lambda f: f.information_requested(day(at))


# --- status -----------------------------------------------------------------------------------


def test_an_assigned_task_is_open_and_a_decision_decides_it() -> None:
    facts = apply(TaskFacts(), assign(0))
    assert facts.status is TaskStatus.OPEN
    assert apply(facts, decide(2)).status is TaskStatus.DECIDED


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        ([assign(0), cancel(3)], TaskStatus.CANCELLED),
        ([assign(0), close(3)], TaskStatus.CLOSED),
        ([assign(0), decide(1), close(3)], TaskStatus.DECIDED),
        ([assign(0), decide(1), cancel(3)], TaskStatus.DECIDED),
        ([assign(0), cancel(1), close(3)], TaskStatus.CANCELLED),
        ([assign(0), ask(1)], TaskStatus.DECIDED),
        ([assign(0), remind(7), escalate(14)], TaskStatus.OPEN),
    ],
)
def test_status_precedence(steps: list[Fact], expected: TaskStatus) -> None:
    assert apply(TaskFacts(), *steps).status is expected


def test_a_reassignment_opens_a_new_round_and_old_facts_stop_counting() -> None:
    """After an information request, the stage resumes with the same task re-assigned."""
    facts = apply(TaskFacts(), assign(0), remind(7), ask(8), assign(12))
    assert facts.status is TaskStatus.OPEN
    assert not facts.reminder_counts
    assert not facts.information_request_counts
    assert facts.due_at == day(26)
    assert apply(facts, decide(13)).status is TaskStatus.DECIDED


def test_an_older_assignment_arriving_late_changes_nothing() -> None:
    facts = apply(TaskFacts(), assign(12), decide(13))
    late, changed = facts.assigned(day(0), day(14))
    assert not changed
    assert late == facts
    assert late.status is TaskStatus.DECIDED


def test_the_earliest_end_of_an_application_counts() -> None:
    facts, changed = TaskFacts().closed(day(5))
    assert changed
    later, changed = facts.closed(day(9))
    assert not changed
    assert later.closed_at == day(5)
    earlier, changed = later.closed(day(3))
    assert changed
    assert earlier.closed_at == day(3)


def test_a_closure_closes_a_task_whose_assignment_arrives_afterwards() -> None:
    facts = apply(TaskFacts(), close(5), assign(1))
    assert facts.status is TaskStatus.CLOSED


def test_facts_seen_before_the_assignment_count_provisionally() -> None:
    facts = apply(TaskFacts(), decide(3))
    assert not facts.is_assigned
    assert facts.status is TaskStatus.DECIDED
    assert apply(facts, assign(1)).status is TaskStatus.DECIDED


EVENTS: list[Fact] = [assign(0), remind(7), escalate(14), decide(15), close(20), close(18)]


def test_any_order_and_any_duplicate_give_the_same_facts() -> None:
    """Commutative and idempotent: arrival order and redelivery cannot change the task."""
    expected = apply(TaskFacts(), *EVENTS)
    assert expected.status is TaskStatus.DECIDED
    for order in itertools.permutations(EVENTS):
        assert apply(TaskFacts(), *order) == expected
        assert apply(TaskFacts(), *order, *order[:3]) == expected


# --- SLA --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("steps", "now", "expected"),
    [
        ([assign(0)], 1, SlaState.ON_TIME),
        ([assign(0), remind(7)], 8, SlaState.REMINDER_SENT),
        ([assign(0), remind(7)], 14, SlaState.OVERDUE),
        ([assign(0)], 15, SlaState.OVERDUE),
        ([assign(0), remind(7), escalate(14)], 15, SlaState.ESCALATED),
        # Finished tasks are judged when they finished, not now.
        ([assign(0), decide(3)], 100, SlaState.ON_TIME),
        ([assign(0), remind(7), decide(9)], 100, SlaState.REMINDER_SENT),
        ([assign(0), decide(16)], 100, SlaState.OVERDUE),
        ([assign(0), cancel(2)], 100, SlaState.ON_TIME),
        ([assign(0), close(20)], 100, SlaState.OVERDUE),
        # A new round forgets the old round's reminder and escalation.
        ([assign(0), remind(7), escalate(14), assign(20)], 21, SlaState.ON_TIME),
    ],
)
def test_sla_state(steps: list[Fact], now: float, expected: SlaState) -> None:
    assert apply(TaskFacts(), *steps).sla_state(day(now)) is expected


def test_ended_at_is_when_the_task_stopped_needing_a_decision() -> None:
    assert apply(TaskFacts(), assign(0)).ended_at is None
    assert apply(TaskFacts(), assign(0), decide(3), close(9)).ended_at == day(3)
    assert apply(TaskFacts(), assign(0), ask(2), decide(3)).ended_at == day(2)
    assert apply(TaskFacts(), assign(0), cancel(4)).ended_at == day(4)
    assert apply(TaskFacts(), assign(0), close(5)).ended_at == day(5)


# --- refusals and requests ---------------------------------------------------------------------


def test_every_refusal_maps_to_a_status_and_a_title() -> None:
    assert set(REFUSAL_STATUS) == set(DecisionRefusal)
    assert set(REFUSAL_TITLE) == set(DecisionRefusal)
    assert {r.value for r, s in REFUSAL_STATUS.items() if s == 403} == {
        "wrong_role",
        "not_assigned",
        "conflict_of_interest",
        "separation_of_duties",
    }
    assert {r.value for r, s in REFUSAL_STATUS.items() if s == 409} == {
        "stage_not_open",
        "duplicate_decision",
        "application_closed",
    }
    assert REFUSAL_STATUS[DecisionRefusal.INVALID_REQUEST] == 422


def test_parse_refusal() -> None:
    assert parse_refusal("wrong_role") is DecisionRefusal.WRONG_ROLE
    assert parse_refusal("ValueError") is None
    assert parse_refusal(None) is None


def test_decision_request_ids_are_stable_and_scoped() -> None:
    first = decision_request_id("task_1", "rev.a@x", "key-00000001")
    assert first == decision_request_id("task_1", "rev.a@x", "key-00000001")
    assert first.startswith("dec_")
    assert len(first) <= 100
    others = {
        decision_request_id("task_2", "rev.a@x", "key-00000001"),
        decision_request_id("task_1", "rev.b@x", "key-00000001"),
        decision_request_id("task_1", "rev.a@x", "key-00000002"),
    }
    assert first not in others
    assert len(others) == 3


def test_requested_fields_only_with_an_information_request() -> None:
    assert decision_body_problem(Decision.REQUEST_INFORMATION, ["commitments.training"]) is None
    assert decision_body_problem(Decision.APPROVE, []) is None
    assert decision_body_problem(Decision.REJECT, ["commitments.training"]) is not None
