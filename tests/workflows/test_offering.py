"""The pure rules after the committee: ids, the award's tranches, milestone staffing."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from contracts.envelope import ActorKind
from contracts.money import Money
from contracts.schedule import ScheduleError
from contracts.v1.common import ReviewStage
from tests.workflows.scenarios import HADDAD, PROFILES, ROSTER, TANAKA, WEBER
from workflows import offering, staffing
from workflows.inputs import ApprovalPolicy
from workflows.state import StageState


def test_tranches_split_in_minor_units_with_the_remainder_last() -> None:
    views = offering.tranches(Money.of("100.01", "EUR"), "signing:40,milestone 1:30,milestone 2:30")
    assert [(t.sequence, t.name, t.amount.amount) for t in views] == [
        (1, "signing", Decimal("40.00")),
        (2, "milestone 1", Decimal("30.00")),
        (3, "milestone 2", Decimal("30.01")),
    ]
    assert sum(t.amount.amount for t in views) == Decimal("100.01")
    (whole,) = offering.tranches(Money.of("1000", "JPY"), "all:100")
    assert whole.amount == Money.of("1000", "JPY")


def test_a_schedule_that_is_no_whole_award_is_refused_by_the_policy() -> None:
    with pytest.raises(ValueError, match="add up to 100"):
        ApprovalPolicy(tranche_schedule="signing:40,milestone:40")
    with pytest.raises(ScheduleError):
        offering.tranches(Money.of("10", "EUR"), "signing")


def test_ids_and_the_fiscal_year_budget() -> None:
    assert offering.offer_id("app_1") == "offer_app_1"
    assert offering.allocation_id("app_1") == "alloc_app_1"
    assert offering.award_id("app_1") == "award_app_1"
    assert offering.budget_id("grant", datetime(2027, 3, 1, tzinfo=UTC)) == "grant-2027"


def test_actors_of_forwarded_facts() -> None:
    assert offering.actor_of("system:zones").kind is ActorKind.SYSTEM
    assert offering.actor_of("alice@acme.example").kind is ActorKind.FIRM
    assert offering.actor_of("admin@gaip.example", "admin").kind is ActorKind.ADMIN


def test_the_milestone_verifier_decided_no_review_stage() -> None:
    stages = {
        ReviewStage.TECHNICAL: StageState(stage=ReviewStage.TECHNICAL, reviewers=[TANAKA]),
        ReviewStage.FINANCE: StageState(stage=ReviewStage.FINANCE, reviewers=[HADDAD]),
    }
    candidates = [p for p in ROSTER if p.reviewer_id in (TANAKA, WEBER)]
    assert staffing.milestone_verifier(candidates, stages, (), "alice@acme.example") == WEBER
    assert staffing.milestone_verifier(candidates, stages, (), WEBER) is None
    assert staffing.milestone_verifier([PROFILES[TANAKA]], stages, (), "alice") is None
