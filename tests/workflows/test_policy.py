"""The pure review rules: eligibility to review, the deterministic choice, tallies and derived
ids (the conflict rule itself is tested in tests/contracts/test_conflicts.py)."""

from __future__ import annotations

import re

import pytest

from contracts.conflicts import firm_organisations
from contracts.v1.common import ReviewStage
from contracts.v1.desk import ReviewerProfile
from contracts.v1.desk import ReviewerRole as R
from tests.workflows.scenarios import PROFILES, content
from workflows import events, policy, staffing

T, S, F, C = ReviewStage.TECHNICAL, ReviewStage.SECURITY, ReviewStage.FINANCE, ReviewStage.COMMITTEE
ORGS = firm_organisations(content())


def reviewer(rid: str, *roles: R, **kw: object) -> ReviewerProfile:
    return ReviewerProfile(reviewer_id=rid, name=rid, roles=list(roles), **kw)  # type: ignore[arg-type]


def test_may_review_needs_role_activity_no_conflict_and_no_other_stage() -> None:
    tanaka = PROFILES["rev.tanaka@gaip.example"]
    assert staffing.may_review(tanaka, T, ORGS, {})
    assert not staffing.may_review(tanaka, S, ORGS, {}), "no security role"
    assert not staffing.may_review(tanaka.model_copy(update={"active": False}), T, ORGS, {})
    assert not staffing.may_review(PROFILES["rev.novak@gaip.example"], T, ORGS, {}), "conflict"
    assert not staffing.may_review(tanaka, C, ORGS, {tanaka.reviewer_id: T}), "decided technical"
    assert staffing.may_review(tanaka, T, ORGS, {tanaka.reviewer_id: T}), "same stage again"


def test_choice_is_sorted_and_deterministic() -> None:
    pools = {C: ["rev.kim", "rev.dubois", "rev.okafor", "rev.adams"]}
    assert staffing.choose_reviewers([(C, 3)], pools) == {C: ["rev.adams", "rev.dubois", "rev.kim"]}


def test_choice_backtracks_so_parallel_stages_get_different_people() -> None:
    pools = {T: ["rev.novak", "rev.tanaka"], S: ["rev.novak"]}
    assert staffing.choose_reviewers([(T, 1), (S, 1)], pools) == {
        T: ["rev.tanaka"],
        S: ["rev.novak"],
    }


def test_choice_fails_when_seats_cannot_be_filled() -> None:
    assert staffing.choose_reviewers([(T, 1), (S, 1)], {T: ["a"], S: ["a"]}) is None
    assert staffing.choose_reviewers([(C, 3)], {C: ["a", "b"]}) is None
    assert staffing.choose_reviewers([(C, 2)], {C: ["a", "b", "c"]}, taken=["a"]) == {C: ["b", "c"]}


@pytest.mark.parametrize(
    ("required", "members", "approvals", "rejections", "approved", "rejected"),
    [
        (1, 1, 1, 0, True, False),
        (1, 1, 0, 1, False, True),
        (2, 3, 1, 1, False, False),
        (2, 3, 2, 1, True, False),
        (2, 3, 0, 2, False, True),
        (3, 4, 2, 1, False, False),
        (3, 4, 1, 2, False, True),
    ],
)
def test_tally(
    required: int, members: int, approvals: int, rejections: int, approved: bool, rejected: bool
) -> None:
    tally = policy.Tally(required, members, approvals, rejections)
    assert (tally.approved, tally.rejected) == (approved, rejected)


def test_ids_are_stable_and_fit_an_identifier() -> None:
    long_id = "app_" + "x" * 96
    reviewer_id = "someone.with.a.very.long.address@" + "y" * 60 + ".example"
    ids = [
        policy.task_id(long_id, C, reviewer_id, 12),
        policy.information_request_id(long_id, 3),
        policy.eligibility_task_id(long_id, 2),
    ]
    for value in ids:
        assert re.fullmatch(r"\S{1,100}", value)
    assert policy.task_id("a", T, "r", 0) == policy.task_id("a", T, "r", 0)
    assert policy.task_id("a", T, "r", 0) != policy.task_id("a", T, "r", 1)
    assert policy.task_id("a", T, "r", 0).startswith("task_technical_")


def test_summary_of_the_application() -> None:
    summary = events.summary_of("ACME", content())
    assert summary.firm_legal_name == "Acme Vision AI GmbH"
    assert summary.firm_country == "DE"
    assert summary.grant_requested is not None
