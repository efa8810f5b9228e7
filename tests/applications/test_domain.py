"""The applications domain, hit directly: statuses, actions, content rules, the projection."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.envelope import ActorKind
from contracts.status import CLOSED, Status, StatusChange, StatusState, transition
from contracts.v1.applications import ApplicationContent
from services.applications.domain import (
    Action,
    ActionNotAllowed,
    InvalidContent,
    allowed_actions,
    changed_fields,
    check_submission,
    complete_content,
    content_issues,
    ensure_allowed,
    interpret,
    is_newer_assessment,
    merge_patch,
    submission_issues,
    visible_actor_id,
)
from tests.applications.helpers import assessed, content, event, staff
from tests.tiers import examples

T0 = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def submitted(revision: int = 1) -> StatusState:
    return StatusState(Status.SUBMITTED, T0, revision)


def apply(state: StatusState, *changes: StatusChange) -> StatusState:
    for change in changes:
        if transition(state, change):
            state = StatusState(change.status, change.at, state.revision)
    return state


# --- actions -------------------------------------------------------------------------------------


def test_drafts_are_edited_submitted_or_deleted_and_nothing_else() -> None:
    assert allowed_actions(Status.DRAFT) == (Action.EDIT, Action.SUBMIT, Action.DELETE)
    for action in (Action.AMEND, Action.WITHDRAW):
        with pytest.raises(ActionNotAllowed):
            ensure_allowed(Status.DRAFT, action)


@pytest.mark.parametrize("status", [s for s in Status if s is not Status.DRAFT])
def test_submitted_applications_are_never_edited(status: Status) -> None:
    for action in (Action.EDIT, Action.SUBMIT, Action.DELETE):
        with pytest.raises(ActionNotAllowed) as caught:
            ensure_allowed(status, action)
        assert caught.value.status is status
        assert caught.value.allowed == allowed_actions(status)


def test_amend_only_while_information_is_requested() -> None:
    ensure_allowed(Status.INFORMATION_REQUESTED, Action.AMEND)
    for status in set(Status) - {Status.INFORMATION_REQUESTED}:
        with pytest.raises(ActionNotAllowed, match="amend"):
            ensure_allowed(status, Action.AMEND)


@pytest.mark.parametrize("status", sorted(CLOSED))
def test_closed_applications_allow_nothing(status: Status) -> None:
    assert allowed_actions(status) == ()


# --- content rules -------------------------------------------------------------------------------


def test_the_example_is_complete() -> None:
    assert isinstance(complete_content(content()), ApplicationContent)
    assert submission_issues(content()) == []


def test_an_empty_draft_lists_every_missing_section() -> None:
    issues = submission_issues({})
    assert {i.dotted for i in issues} == {"firm", "incentives", "proposal", "commitments"}
    assert {i.type for i in issues} == {"missing"}


def test_missing_nested_fields_are_named_by_path() -> None:
    draft = content()
    del draft["firm"]["registration_number"]
    del draft["proposal"]["investment_commitment"]
    with pytest.raises(InvalidContent) as caught:
        complete_content(draft)
    assert {i.dotted for i in caught.value.issues} == {
        "firm.registration_number",
        "proposal.investment_commitment",
    }


def test_a_submission_must_request_an_incentive() -> None:
    draft = content(incentives={"grant": None, "zone_space": [], "fast_track": []})
    assert [(i.dotted, i.type) for i in submission_issues(draft)] == [
        ("incentives", "no_incentive_requested")
    ]


def test_parent_companies_cannot_own_more_than_everything() -> None:
    parents = [
        {"legal_name": "A", "country": "DE", "ownership_pct": "60"},
        {"legal_name": "B", "country": "FR", "ownership_pct": "40.01"},
    ]
    issues = content_issues({"firm": {"parent_companies": parents}})
    assert [(i.dotted, i.type) for i in issues] == [
        ("firm.parent_companies", "ownership_exceeds_100")
    ]
    parents[1]["ownership_pct"] = "40"
    assert content_issues({"firm": {"parent_companies": parents}}) == []


def test_duplicates_are_named_at_the_repeated_entry() -> None:
    draft = content()
    draft["incentives"]["zone_space"].append({"unit_type": "gpu_rack_unit", "quantity": 1})
    draft["documents"].append(dict(draft["documents"][0]))
    issues = {(i.dotted, i.type) for i in content_issues(draft)}
    assert issues == {
        ("incentives.zone_space[2].unit_type", "duplicate_unit_type"),
        ("documents[1].document_id", "duplicate_document"),
    }


def test_check_submission_passes_the_example_and_refuses_rule_breaks() -> None:
    body = content()
    check_submission(body)
    body = content(incentives={"grant": None, "zone_space": [], "fast_track": []})
    with pytest.raises(InvalidContent):
        check_submission(body)


def test_merge_patch_follows_rfc_7396() -> None:
    target = {"a": "b", "c": {"d": "e", "f": "g"}, "l": [1, 2]}
    patch = {"a": "z", "c": {"f": None, "h": "i"}, "l": [3], "n": {"o": 1}}
    assert merge_patch(target, patch) == {
        "a": "z",
        "c": {"d": "e", "h": "i"},
        "l": [3],
        "n": {"o": 1},
    }
    assert target["c"] == {"d": "e", "f": "g"}  # the input is not modified


def test_changed_fields_are_leaf_paths_and_whole_lists() -> None:
    before = content()
    after = content(proposal__local_jobs=55)
    after["commitments"]["training"] = None
    after["incentives"]["zone_space"].pop()
    assert changed_fields(before, after) == [
        "commitments.training",
        "incentives.zone_space",
        "proposal.local_jobs",
    ]
    assert changed_fields(before, before) == []
    assert changed_fields({"documents": []}, {}) == []  # empty and absent lists are the same


def test_changed_fields_collapse_to_sections_beyond_the_contract_limit() -> None:
    before: dict[str, Any] = {"firm": {f"f{i}": i for i in range(120)}}
    after: dict[str, Any] = {"firm": {f"f{i}": i + 1 for i in range(120)}}
    assert changed_fields(before, after) == ["firm"]


# --- status transitions --------------------------------------------------------------------------


def test_the_happy_path_moves_forward() -> None:
    state = apply(
        submitted(),
        StatusChange(Status.ELIGIBLE, at(1), revision=1),
        StatusChange(Status.UNDER_REVIEW, at(2)),
        StatusChange(Status.APPROVED, at(3)),
        StatusChange(Status.AWARD_OPENED, at(4)),
    )
    assert state.status is Status.AWARD_OPENED


def test_a_late_older_fact_does_not_move_the_status_back() -> None:
    state = apply(submitted(), StatusChange(Status.UNDER_REVIEW, at(5)))
    assert not transition(state, StatusChange(Status.ELIGIBLE, at(1), revision=1))


def test_an_assessment_after_the_review_began_does_not_move_the_status_back() -> None:
    # An amendment is assessed again while the review's tasks reopen: either comes first.
    reviewing = apply(submitted(), StatusChange(Status.UNDER_REVIEW, at(5)))
    assert not transition(reviewing, StatusChange(Status.ELIGIBLE, at(9), revision=1))
    asked = apply(submitted(), StatusChange(Status.INFORMATION_REQUESTED, at(5)))
    assert not transition(asked, StatusChange(Status.ELIGIBLE, at(9), revision=1))
    eligible = apply(submitted(), StatusChange(Status.ELIGIBLE, at(9), revision=1))
    assert transition(eligible, StatusChange(Status.UNDER_REVIEW, at(5)))
    journey = [
        StatusChange(Status.UNDER_REVIEW, at(2)),
        StatusChange(Status.UNDER_REVIEW, at(3)),
        StatusChange(Status.ELIGIBLE, at(4), revision=1),
    ]
    results = {apply(submitted(), *order).status for order in itertools.permutations(journey)}
    assert results == {Status.UNDER_REVIEW}


def test_an_assessment_of_the_submitted_revision_follows_whatever_the_clocks() -> None:
    # Eligibility's clock runs behind the applications service's: the fact is still later.
    assert transition(submitted(), StatusChange(Status.ELIGIBLE, at(-1), revision=1))


def test_an_assessment_of_a_superseded_revision_changes_nothing() -> None:
    state = StatusState(Status.SUBMITTED, at(10), revision=2)
    assert not transition(state, StatusChange(Status.INELIGIBLE, at(11), revision=1))
    assert transition(state, StatusChange(Status.ELIGIBLE, at(11), revision=2))


def test_closures_beat_open_statuses_and_the_earliest_closure_wins() -> None:
    state = apply(submitted(), StatusChange(Status.UNDER_REVIEW, at(9)))
    state = apply(state, StatusChange(Status.WITHDRAWN, at(5)))
    assert state.status is Status.WITHDRAWN
    assert not transition(state, StatusChange(Status.APPROVED, at(10)))
    assert not transition(state, StatusChange(Status.REJECTED, at(6)))
    assert transition(state, StatusChange(Status.REJECTED, at(4)))


def test_approval_is_not_undone_by_review_facts() -> None:
    state = apply(submitted(), StatusChange(Status.APPROVED, at(5)))
    assert not transition(state, StatusChange(Status.UNDER_REVIEW, at(6)))
    assert not transition(state, StatusChange(Status.INFORMATION_REQUESTED, at(7)))
    assert transition(state, StatusChange(Status.AWARD_OPENED, at(4)))
    assert transition(state, StatusChange(Status.WITHDRAWN, at(8)))


def test_drafts_are_never_moved_by_events() -> None:
    draft = StatusState(Status.DRAFT, T0, 0)
    assert not transition(draft, StatusChange(Status.ELIGIBLE, at(1), revision=1))
    assert not transition(draft, StatusChange(Status.WITHDRAWN, at(1)))


_DOWNSTREAM = [
    Status.ELIGIBLE,
    Status.INELIGIBLE,
    Status.INFORMATION_REQUESTED,
    Status.UNDER_REVIEW,
    Status.APPROVED,
    Status.AWARD_OPENED,
    Status.OFFERED,
    Status.UNFUNDED,
    Status.REJECTED,
    Status.WITHDRAWN,
]


@settings(max_examples=examples(300), deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(_DOWNSTREAM),
            st.integers(min_value=1, max_value=10_000),
            st.sampled_from([None, 1]),
        ),
        min_size=1,
        max_size=6,
        unique_by=lambda change: change[1],
    ),
    st.randoms(use_true_random=False),
)
def test_the_result_does_not_depend_on_arrival_order_or_duplicates(
    facts: list[tuple[Status, int, int | None]], rnd: Any
) -> None:
    changes = [
        StatusChange(status, at(minute / 10), revision=revision)
        for status, minute, revision in facts
    ]
    expected = apply(submitted(), *changes)
    shuffled = [*changes, rnd.choice(changes)]  # a redelivered duplicate
    rnd.shuffle(shuffled)
    assert apply(submitted(), *shuffled) == expected


def test_every_permutation_of_a_realistic_journey_ends_the_same() -> None:
    journey = [
        StatusChange(Status.ELIGIBLE, at(1), revision=1),
        StatusChange(Status.UNDER_REVIEW, at(2)),
        StatusChange(Status.APPROVED, at(3)),
        StatusChange(Status.AWARD_OPENED, at(4)),
    ]
    results = {apply(submitted(), *order).status for order in itertools.permutations(journey)}
    assert results == {Status.AWARD_OPENED}


def test_an_application_funded_after_waiting_for_budget_moves_on_in_any_order() -> None:
    journey = [
        StatusChange(Status.UNDER_REVIEW, at(2)),
        StatusChange(Status.APPROVED, at(3)),
        StatusChange(Status.UNFUNDED, at(4), ("The grant budget is short.",)),
        StatusChange(Status.AWARD_OPENED, at(50)),  # a top-up opened the award
        StatusChange(Status.OFFERED, at(51)),
    ]
    results = {apply(submitted(), *order).status for order in itertools.permutations(journey)}
    assert results == {Status.OFFERED}
    unfunded = {apply(submitted(), *order).status for order in itertools.permutations(journey[:3])}
    assert unfunded == {Status.UNFUNDED}
    waiting = apply(submitted(), *journey[:3])
    assert transition(waiting, StatusChange(Status.WITHDRAWN, at(60)))
    assert not transition(waiting, StatusChange(Status.UNDER_REVIEW, at(60)))


# --- interpreting events -------------------------------------------------------------------------


def test_eligible_assessment_carries_the_rule_set() -> None:
    fact = interpret(assessed("app_1", "eligible", version="2026.2"))
    assert fact is not None
    assert fact.change is not None
    assert fact.change.status is Status.ELIGIBLE
    assert fact.change.revision == 1
    assert fact.eligibility is not None
    assert fact.eligibility.rule_set_version == "2026.2"
    assert "2026.2" in fact.summary


def test_ineligible_assessment_gives_the_failed_rules_as_reasons() -> None:
    fact = interpret(assessed("app_1", "ineligible"))
    assert fact is not None
    assert fact.change is not None
    assert fact.change.status is Status.INELIGIBLE
    assert fact.change.reasons == ("The investment commitment is below the EUR 1,000,000 minimum.",)


def test_needs_information_names_the_fields() -> None:
    envelope = assessed("app_1", "needs_information", missing_fields=["commitments.training"])
    fact = interpret(envelope)
    assert fact is not None
    assert fact.change is not None
    assert fact.change.status is Status.INFORMATION_REQUESTED
    assert fact.information_request is not None
    assert fact.information_request.fields == ["commitments.training"]
    assert fact.information_request.event_id == envelope.event_id
    assert "commitments.training" in fact.change.reasons[0]


def test_review_information_request_is_answerable_by_id() -> None:
    fact = interpret(event("review.information_requested", "app_1"))
    assert fact is not None
    assert fact.change is not None
    assert fact.change.status is Status.INFORMATION_REQUESTED
    assert fact.information_request is not None
    assert fact.information_request.request_id == "req_5T2W8N"
    assert fact.information_request.respond_by is not None


def test_a_request_relayed_for_eligibility_names_eligibility_as_the_source() -> None:
    fact = interpret(
        event(
            "review.information_requested",
            "app_1",
            source="eligibility",
            fields=["commitments.data_protection_attestation"],
            questions=[],
        )
    )
    assert fact is not None
    assert fact.information_request is not None
    assert fact.information_request.source == "eligibility"
    assert fact.information_request.request_id == "req_5T2W8N"  # answerable by id
    assert fact.summary.startswith("The eligibility check asks")
    assert fact.reasons == ("Please review: commitments.data_protection_attestation.",)


def test_an_eligibility_stage_rejection_keeps_the_firm_on_ineligible() -> None:
    fact = interpret(event("application.rejected", "app_1"))  # the example: stage eligibility
    assert fact is not None
    assert fact.change is not None
    assert fact.change.status is Status.INELIGIBLE
    reviewed = interpret(event("application.rejected", "app_1", stage="security"))
    assert reviewed is not None
    assert reviewed.change is not None
    assert reviewed.change.status is Status.REJECTED


@pytest.mark.parametrize(
    ("message_type", "status"),
    [
        ("review.task_assigned", Status.UNDER_REVIEW),
        ("application.approved", Status.APPROVED),
        ("award.opened", Status.AWARD_OPENED),
        ("application.withdrawn", Status.WITHDRAWN),
    ],
)
def test_status_events(message_type: str, status: Status) -> None:
    fact = interpret(event(message_type, "app_1"))
    assert fact is not None
    assert fact.change is not None
    assert fact.change.status is status


@pytest.mark.parametrize(
    "message_type",
    [
        "review.decision_recorded",
        "zone.allocated",
        "zone.waitlisted",
        "zone.released",
        "zone.refused",
        "tranche.released",
        "tranche.paid",
        "tranche.failed",
        "award.cancelled",
    ],
)
def test_timeline_only_events_the_firm_sees(message_type: str) -> None:
    fact = interpret(event(message_type, "app_1"))
    assert fact is not None
    assert fact.change is None
    assert not fact.staff_only
    assert fact.summary


@pytest.mark.parametrize(
    "message_type",
    ["review.reminder_due", "review.escalated", "review.task_cancelled", "budget.exhausted"],
)
def test_workflow_mechanics_are_for_staff_only(message_type: str) -> None:
    fact = interpret(event(message_type, "app_1"))
    assert fact is not None
    assert fact.staff_only
    assert fact.change is None


@pytest.mark.parametrize("message_type", ["application.submitted", "application.amended"])
def test_own_submissions_and_amendments_add_nothing_when_they_come_back(message_type: str) -> None:
    assert interpret(event(message_type, "app_1")) is None


def test_the_shown_assessment_is_the_latest_of_the_latest_revision() -> None:
    first = assessed("app_1", "needs_information", occurred_at=at(1)).payload
    second = assessed("app_1", "eligible", revision=2, occurred_at=at(2)).payload
    late_first = assessed("app_1", "ineligible", occurred_at=at(3)).payload
    assert is_newer_assessment(None, first)
    assert is_newer_assessment(first, second)
    assert not is_newer_assessment(second, late_first)


def test_firms_see_staff_by_role_only() -> None:
    reviewer = staff(ActorKind.REVIEWER, "rev.tanaka@gaip.example")
    assert visible_actor_id(reviewer.kind.value, reviewer.id, for_firm=True) == "program reviewer"
    assert visible_actor_id(reviewer.kind.value, reviewer.id, for_firm=False) == reviewer.id
    assert visible_actor_id("system", "system:eligibility", for_firm=True) == "system:eligibility"
