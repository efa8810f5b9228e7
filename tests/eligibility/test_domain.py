"""The eligibility domain: the shipped rule sets rule by rule, outcomes, selection, hashing."""

from __future__ import annotations

import dataclasses
import hashlib
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import cel
import pytest

from contracts.money import Money
from contracts.v1.common import EligibilityOutcome
from contracts.v1.eligibility import EligibilityAssessed
from services.eligibility.domain import (
    Decision,
    MoneyTable,
    NoRuleSetInForce,
    RuleCatalog,
    RuleOutcome,
    RuleSet,
    RuleStatus,
    build_catalog,
    months_before,
    parse_rule_set,
    python_pattern,
)
from services.eligibility.rulefiles import SHIPPED_RULES_DIR, load_catalog
from tests.eligibility.builders import content, money, rule_set_toml

V2026 = date(2026, 6, 1)
V2027 = date(2027, 6, 1)
SHIPPED_RULE_IDS = [
    "priority_sector",
    "minimum_investment",
    "foreign_ownership",
    "jurisdiction",
    "registration_number",
    "registration_document",
    "data_protection_attestation",
    "responsible_ai_attestation",
    "capacity_building",
]
#: From 2026.2 on, each attestation must also be recent.
ATTESTATION_WINDOW_RULE_IDS = [
    *SHIPPED_RULE_IDS[:7],
    "data_protection_attestation_current",
    "responsible_ai_attestation",
    "responsible_ai_attestation_current",
    "capacity_building",
]


@pytest.fixture(scope="module")
def shipped() -> RuleCatalog:
    return load_catalog()


def assess(catalog: RuleCatalog, changes: dict[str, Any], on: date = V2026) -> Decision:
    return catalog.assess(content(changes), on)


def result(decision: Decision, rule_id: str) -> RuleOutcome:
    return next(r for r in decision.results if r.rule_id == rule_id)


def only_rule_not_passed(decision: Decision) -> RuleOutcome:
    not_passed = [r for r in decision.results if not r.passed]
    assert len(not_passed) == 1, not_passed
    return not_passed[0]


# --- the shipped rule sets ------------------------------------------------------------------


def test_shipped_catalog_has_three_versions_in_date_order(shipped: RuleCatalog) -> None:
    assert [(r.id, r.version, r.effective_from) for r in shipped.rule_sets] == [
        ("gaip-eligibility", "2026.1", date(2026, 1, 1)),
        ("gaip-eligibility", "2026.2", date(2026, 12, 2)),
        ("gaip-eligibility", "2027.1", date(2027, 1, 1)),
    ]
    first, *later = shipped.rule_sets
    assert [rule.id for rule in first.rules] == SHIPPED_RULE_IDS
    for rule_set in later:
        assert [rule.id for rule in rule_set.rules] == ATTESTATION_WINDOW_RULE_IDS
    for rule_set in shipped.rule_sets:
        assert rule_set.warnings == ()
        assert rule_set.title


# --- the attestation window (2026.2 on) -----------------------------------------------------

_SIGNED = "2026-11-20T09:00:00Z"  # when the contract's example attestations were signed


def _signed_at(when: str) -> dict[str, Any]:
    attestation = {"accepted": True, "signatory": "Dr. Jana Weber, CTO", "attested_at": when}
    return {
        "commitments.data_protection_attestation": attestation,
        "commitments.responsible_ai_attestation": {**attestation, "attested_at": _SIGNED},
    }


@pytest.mark.parametrize(
    ("submitted_at", "window_start"),
    [
        (datetime(2027, 11, 20, 9, 0, tzinfo=UTC), datetime(2026, 11, 20, 9, 0, tzinfo=UTC)),
        (datetime(2028, 2, 29, 12, 0, tzinfo=UTC), datetime(2027, 2, 28, 12, 0, tzinfo=UTC)),
        (datetime(2027, 3, 31, 0, 0, tzinfo=UTC), datetime(2026, 3, 31, 0, 0, tzinfo=UTC)),
    ],
)
def test_months_before_counts_calendar_months(
    submitted_at: datetime, window_start: datetime
) -> None:
    assert months_before(submitted_at, 12) == window_start


def test_months_before_clamps_to_the_end_of_a_shorter_month() -> None:
    assert months_before(datetime(2027, 3, 31, tzinfo=UTC), 1) == datetime(2027, 2, 28, tzinfo=UTC)
    assert months_before(datetime(2027, 1, 15, tzinfo=UTC), 13) == datetime(
        2025, 12, 15, tzinfo=UTC
    )
    with pytest.raises(ValueError, match="whole number of months"):
        months_before(datetime(2027, 1, 15, tzinfo=UTC), -1)


def test_an_attestation_older_than_12_months_must_be_signed_again(shipped: RuleCatalog) -> None:
    submitted_at = datetime(2027, 11, 20, 9, 0, 1, tzinfo=UTC)  # a year and a second later
    decision = shipped.assess(content(_signed_at("2026-11-20T09:00:00Z")), submitted_at)
    stale = [r for r in decision.results if not r.passed]
    assert [r.rule_id for r in stale] == [
        "data_protection_attestation_current",
        "responsible_ai_attestation_current",
    ]
    assert all(r.status is RuleStatus.NEEDS_INFORMATION for r in stale)
    assert "within the 12 months before submission" in stale[0].explanation
    assert decision.outcome is EligibilityOutcome.NEEDS_INFORMATION
    assert decision.missing_fields == (
        "commitments.data_protection_attestation",
        "commitments.responsible_ai_attestation",
    )


def test_an_attestation_signed_exactly_12_months_before_counts(shipped: RuleCatalog) -> None:
    submitted_at = datetime(2027, 11, 20, 9, 0, tzinfo=UTC)
    decision = shipped.assess(content(_signed_at(_SIGNED)), submitted_at)
    assert decision.outcome is EligibilityOutcome.ELIGIBLE


def test_only_the_stale_attestation_is_asked_for(shipped: RuleCatalog) -> None:
    submitted_at = datetime(2027, 6, 1, tzinfo=UTC)
    decision = shipped.assess(content(_signed_at("2026-05-31T23:59:59Z")), submitted_at)
    outcome = only_rule_not_passed(decision)
    assert outcome.rule_id == "data_protection_attestation_current"
    assert decision.missing_fields == ("commitments.data_protection_attestation",)


def test_an_attestation_signed_again_after_submission_counts(shipped: RuleCatalog) -> None:
    # An amendment may carry a fresh signature; the window only bounds how old it may be.
    # (Evaluated directly: signatures in the future are refused by the contract itself.)
    rule_set = shipped.in_force(V2027)
    decision = rule_set.evaluate(content(), datetime(2026, 11, 1, tzinfo=UTC))
    assert decision.outcome is EligibilityOutcome.ELIGIBLE


def test_the_2026_1_rules_stay_as_they_were_decided(shipped: RuleCatalog) -> None:
    # Recorded decisions cite 2026.1 by hash: it has no attestation window, and keeps none.
    old = shipped.in_force(date(2026, 6, 1))
    assert old.version == "2026.1"
    signed_long_ago = content(_signed_at("2024-01-10T09:00:00Z"))
    assert old.evaluate(signed_long_ago, date(2026, 6, 1)).outcome is EligibilityOutcome.ELIGIBLE
    revised = shipped.in_force(date(2026, 12, 2))
    assert revised.evaluate(signed_long_ago, date(2026, 12, 2)).outcome is (
        EligibilityOutcome.NEEDS_INFORMATION
    )


def test_without_a_submission_time_the_window_cannot_pass(shipped: RuleCatalog) -> None:
    decision = shipped.in_force(V2027).evaluate(content())
    assert {r.rule_id for r in decision.results if not r.passed} == {
        "data_protection_attestation_current",
        "responsible_ai_attestation_current",
    }
    assert all(r.error for r in decision.results if not r.passed)


@pytest.mark.parametrize("on", [V2026, V2027])
def test_the_documented_example_application_is_eligible(shipped: RuleCatalog, on: date) -> None:
    decision = assess(shipped, {}, on)
    assert decision.outcome is EligibilityOutcome.ELIGIBLE
    assert all(r.status is RuleStatus.PASSED for r in decision.results)
    assert decision.missing_fields == ()
    assert all(r.explanation for r in decision.results)


@pytest.mark.parametrize(
    "sector",
    [
        "health",
        "agriculture",
        "public_safety",
        "smart_governance",
        "education",
        "fintech",
        "robotics",
    ],
)
def test_priority_sectors_pass(shipped: RuleCatalog, sector: str) -> None:
    decision = assess(shipped, {"proposal.sector": sector})
    assert result(decision, "priority_sector").passed
    assert decision.outcome is EligibilityOutcome.ELIGIBLE


def test_other_sector_is_ineligible_with_a_readable_reason(shipped: RuleCatalog) -> None:
    decision = assess(shipped, {"proposal.sector": "other"})
    failed = only_rule_not_passed(decision)
    assert failed.rule_id == "priority_sector"
    assert failed.status is RuleStatus.FAILED
    assert "health, agriculture, public safety, smart governance" in failed.explanation
    assert decision.outcome is EligibilityOutcome.INELIGIBLE
    assert decision.failed == (failed,)


@pytest.mark.parametrize(
    ("amount", "passes"),
    [
        (money("1000000.00"), True),  # exactly the minimum
        (money("999999.99"), False),
        (money("1000000.01"), True),
        (money("1200000", "USD"), True),  # 1,032,000.00 EUR at 0.86
        (money("1160000", "USD"), False),  # 997,600.00 EUR
        (money("180000000", "JPY"), True),  # 1,026,000.00 EUR at 0.0057
        (money("1", "EUR"), False),
    ],
)
def test_minimum_investment_in_eur(
    shipped: RuleCatalog, amount: dict[str, str], passes: bool
) -> None:
    decision = assess(shipped, {"proposal.investment_commitment": amount})
    outcome = result(decision, "minimum_investment")
    assert outcome.passed is passes
    if not passes:
        assert outcome.status is RuleStatus.FAILED
        assert "EUR 1,000,000" in outcome.explanation
        assert decision.outcome is EligibilityOutcome.INELIGIBLE


def test_investment_in_a_currency_without_a_rate_needs_information(shipped: RuleCatalog) -> None:
    decision = assess(shipped, {"proposal.investment_commitment": money("9000000", "BRL")})
    outcome = only_rule_not_passed(decision)
    assert outcome.rule_id == "minimum_investment"
    assert outcome.status is RuleStatus.NEEDS_INFORMATION
    assert outcome.missing_fields == ("proposal.investment_commitment",)
    assert "currency the program converts" in outcome.explanation
    assert outcome.error is not None  # kept for operators, not shown to the firm
    assert decision.outcome is EligibilityOutcome.NEEDS_INFORMATION
    assert decision.missing_fields == ("proposal.investment_commitment",)


def test_the_2027_rules_raise_the_minimum_investment(shipped: RuleCatalog) -> None:
    changes = {"proposal.investment_commitment": money("1200000")}
    assert assess(shipped, changes, V2026).outcome is EligibilityOutcome.ELIGIBLE
    decision = assess(shipped, changes, V2027)
    assert only_rule_not_passed(decision).rule_id == "minimum_investment"
    assert "EUR 1,500,000" in result(decision, "minimum_investment").explanation


@pytest.mark.parametrize(("pct", "passes"), [("100", True), ("25", True), ("24.99", False)])
def test_foreign_ownership(shipped: RuleCatalog, pct: str, passes: bool) -> None:
    decision = assess(shipped, {"firm.foreign_ownership_pct": pct})
    assert result(decision, "foreign_ownership").passed is passes
    if not passes:
        assert only_rule_not_passed(decision).rule_id == "foreign_ownership"
        assert decision.outcome is EligibilityOutcome.INELIGIBLE


@pytest.mark.parametrize(
    ("changes", "passes"),
    [
        ({"firm.country_of_incorporation": "AE"}, True),
        ({"firm.country_of_incorporation": "KR", "firm.parent_companies": []}, True),
        ({"firm.country_of_incorporation": "IR"}, False),
        ({"firm.parent_companies[0].country": "KP"}, False),
    ],
)
def test_jurisdiction_of_the_firm_and_its_parents(
    shipped: RuleCatalog, changes: dict[str, Any], passes: bool
) -> None:
    decision = assess(shipped, changes)
    assert result(decision, "jurisdiction").passed is passes
    if not passes:
        assert "FATF" in only_rule_not_passed(decision).explanation
        assert decision.outcome is EligibilityOutcome.INELIGIBLE


@pytest.mark.parametrize(
    ("number", "passes"),
    [
        ("HRB 123456", True),
        ("CN-91110000", True),
        ("110-81-12345", True),
        ("N/A", False),  # too short
        ("PENDING", False),  # no digit
        ("#123456", False),  # not a register number's characters
    ],
)
def test_registration_number_that_looks_wrong_needs_information(
    shipped: RuleCatalog, number: str, passes: bool
) -> None:
    decision = assess(shipped, {"firm.registration_number": number})
    outcome = result(decision, "registration_number")
    assert outcome.passed is passes
    if not passes:
        assert outcome.status is RuleStatus.NEEDS_INFORMATION
        assert outcome.missing_fields == ("firm.registration_number",)
        assert outcome.error is None  # a plain `false`, turned into a request by the rule
        assert decision.outcome is EligibilityOutcome.NEEDS_INFORMATION


@pytest.mark.parametrize(
    "changes",
    [{"documents": []}, {"documents[0].kind": "investment_plan"}],
    ids=["no documents", "no register extract"],
)
def test_missing_registration_document_needs_information(
    shipped: RuleCatalog, changes: dict[str, Any]
) -> None:
    decision = assess(shipped, changes)
    outcome = only_rule_not_passed(decision)
    assert outcome.rule_id == "registration_document"
    assert outcome.status is RuleStatus.NEEDS_INFORMATION
    assert outcome.missing_fields == ("documents",)
    assert "business_registration" in outcome.explanation
    assert decision.outcome is EligibilityOutcome.NEEDS_INFORMATION


@pytest.mark.parametrize("attestation", ["data_protection", "responsible_ai"])
def test_attestation_not_given_needs_information(shipped: RuleCatalog, attestation: str) -> None:
    field = f"commitments.{attestation}_attestation"
    decision = assess(shipped, {field: None})
    outcome = only_rule_not_passed(decision)
    assert outcome.rule_id == f"{attestation}_attestation"
    assert outcome.status is RuleStatus.NEEDS_INFORMATION
    assert outcome.missing_fields == (field,)
    assert outcome.error is None  # not evaluated at all: a required field is missing
    assert field in outcome.explanation
    assert decision.outcome is EligibilityOutcome.NEEDS_INFORMATION
    assert decision.missing_fields == (field,)


@pytest.mark.parametrize("attestation", ["data_protection", "responsible_ai"])
def test_attestation_refused_is_ineligible(shipped: RuleCatalog, attestation: str) -> None:
    decision = assess(shipped, {f"commitments.{attestation}_attestation.accepted": False})
    outcome = only_rule_not_passed(decision)
    assert outcome.rule_id == f"{attestation}_attestation"
    assert outcome.status is RuleStatus.FAILED
    assert "did not accept" in outcome.explanation
    assert decision.outcome is EligibilityOutcome.INELIGIBLE


NO_CAPACITY_BUILDING = {
    "commitments.training": None,
    "commitments.university_partnerships": [],
    "commitments.exchange_programs": [],
}
TRAINING = {"engineers_per_year": 20, "description": "Applied ML residency."}
PARTNERSHIP = {"university": "National University of Technology", "scope": "Joint chair."}
EXCHANGE = {"partner": "Acme Research Lab Munich", "participants_per_year": 4}


@pytest.mark.parametrize(
    ("offer", "in_2026", "in_2027"),
    [
        ({}, False, False),
        ({"commitments.training": TRAINING}, True, False),
        ({"commitments.training": {**TRAINING, "engineers_per_year": 5}}, False, False),
        ({"commitments.university_partnerships": [PARTNERSHIP]}, True, False),
        ({"commitments.exchange_programs": [EXCHANGE]}, True, False),
        (
            {"commitments.training": TRAINING, "commitments.exchange_programs": [EXCHANGE]},
            True,
            True,
        ),
        (
            {
                "commitments.training": {**TRAINING, "engineers_per_year": 12},
                "commitments.university_partnerships": [PARTNERSHIP],
            },
            True,
            False,
        ),
    ],
)
def test_capacity_building(
    shipped: RuleCatalog, offer: dict[str, Any], in_2026: bool, in_2027: bool
) -> None:
    changes = {**NO_CAPACITY_BUILDING, **offer}
    for on, passes in ((V2026, in_2026), (V2027, in_2027)):
        decision = assess(shipped, changes, on)
        assert result(decision, "capacity_building").passed is passes, on
        expected = EligibilityOutcome.ELIGIBLE if passes else EligibilityOutcome.INELIGIBLE
        assert decision.outcome is expected
    if not in_2026:
        explanation = result(assess(shipped, changes), "capacity_building").explanation
        assert "capacity-building commitment" in explanation


# --- outcomes -------------------------------------------------------------------------------


def test_failure_outranks_missing_information_but_missing_fields_are_kept(
    shipped: RuleCatalog,
) -> None:
    decision = assess(
        shipped,
        {
            "proposal.sector": "other",
            "commitments.data_protection_attestation": None,
            "documents": [],
        },
    )
    assert decision.outcome is EligibilityOutcome.INELIGIBLE
    assert decision.missing_fields == ("documents", "commitments.data_protection_attestation")
    assert [r.rule_id for r in decision.failed] == ["priority_sector"]


def test_every_missing_field_is_named_once_in_rule_order(shipped: RuleCatalog) -> None:
    decision = assess(
        shipped,
        {
            "commitments.responsible_ai_attestation": None,
            "commitments.data_protection_attestation": None,
            "firm.registration_number": "none",
        },
    )
    assert decision.outcome is EligibilityOutcome.NEEDS_INFORMATION
    assert decision.missing_fields == (
        "firm.registration_number",
        "commitments.data_protection_attestation",
        "commitments.responsible_ai_attestation",
    )


@pytest.mark.parametrize(
    "changes",
    [{}, {"proposal.sector": "other"}, {"commitments.responsible_ai_attestation": None}],
    ids=["eligible", "ineligible", "needs_information"],
)
def test_decision_becomes_a_valid_contract_event(
    shipped: RuleCatalog, changes: dict[str, Any]
) -> None:
    rule_set = shipped.in_force(V2026)
    decision = rule_set.evaluate(content(changes))
    assessed_at = datetime(2026, 11, 26, 10, 35, tzinfo=UTC)
    event = decision.to_event(
        application_id="app_1", application_revision=2, assessed_at=assessed_at
    )
    assert isinstance(event, EligibilityAssessed)
    assert event.outcome is decision.outcome
    assert (event.rule_set_id, event.rule_set_version) == ("gaip-eligibility", "2026.1")
    assert event.rule_set_sha256 == rule_set.sha256
    assert event.rule_set_effective_from == date(2026, 1, 1)
    assert [r.rule_id for r in event.rule_results] == SHIPPED_RULE_IDS
    assert event.missing_fields == list(decision.missing_fields)
    # Round-trips through the wire format.
    assert EligibilityAssessed.model_validate_json(event.model_dump_json()) == event


# --- selection by date ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("at", "version"),
    [
        (date(2026, 1, 1), "2026.1"),
        (datetime(2026, 12, 1, 23, 59, 59, tzinfo=UTC), "2026.1"),
        (date(2026, 12, 2), "2026.2"),
        (datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC), "2026.2"),
        (datetime(2027, 1, 1, 0, 0, tzinfo=UTC), "2027.1"),
        # 00:30 in UTC+1 is still 2026 in UTC: the program's dates are UTC dates.
        (datetime(2027, 1, 1, 0, 30, tzinfo=timezone(timedelta(hours=1))), "2026.2"),
        (date(2031, 5, 5), "2027.1"),
    ],
)
def test_the_rule_set_in_force_is_the_latest_effective_on_or_before(
    shipped: RuleCatalog, at: date | datetime, version: str
) -> None:
    assert shipped.in_force(at).version == version


def test_before_the_first_rule_set_nothing_is_in_force(shipped: RuleCatalog) -> None:
    with pytest.raises(NoRuleSetInForce, match=r"2025-12-31.*2026-01-01"):
        shipped.in_force(date(2025, 12, 31))


def test_naive_datetimes_are_refused(shipped: RuleCatalog) -> None:
    with pytest.raises(ValueError, match="naive"):
        shipped.in_force(datetime(2026, 6, 1, 12, 0))  # naive on purpose


def test_catalog_refuses_ambiguous_versions_and_dates() -> None:
    from tests.eligibility.builders import PASSING_RULE, rule_set_toml

    a = parse_rule_set(rule_set_toml(PASSING_RULE, version="1"), "a.toml")
    b = parse_rule_set(rule_set_toml(PASSING_RULE, version="2"), "b.toml")
    a_again = parse_rule_set(
        rule_set_toml(PASSING_RULE, version="1", effective_from="2026-02-01"), "c.toml"
    )
    with pytest.raises(ValueError, match=r"a\.toml and b\.toml both take effect on 2026-01-01"):
        build_catalog([a, b])
    with pytest.raises(ValueError, match=r"test-rules 1 is defined twice"):
        build_catalog([a, a_again])
    with pytest.raises(ValueError, match="no rule set found"):
        build_catalog([])


# --- hashing --------------------------------------------------------------------------------


def test_hash_is_the_sha256_of_the_file_bytes_and_stable() -> None:
    path = SHIPPED_RULES_DIR / "gaip-eligibility-2026.1.toml"
    data = path.read_bytes()
    first = parse_rule_set(data, path.name)
    second = parse_rule_set(data, "elsewhere.toml")
    assert first.sha256 == second.sha256 == hashlib.sha256(data).hexdigest()
    assert parse_rule_set(data + b"\n", path.name).sha256 != first.sha256
    decision = first.evaluate(content())
    assert decision.rule_set_sha256 == first.sha256


def test_the_shipped_versions_hash_differently(shipped: RuleCatalog) -> None:
    hashes = {r.sha256 for r in shipped.rule_sets}
    assert len(hashes) == len(shipped.rule_sets)


# --- CEL bindings and evaluation errors -----------------------------------------------------


def test_money_converts_in_exact_decimals_rounded_half_even_to_cents() -> None:
    table = MoneyTable("EUR", {"EUR": Decimal(1), "JPY": Decimal("0.0057")})
    assert table.base_key == "eur"
    assert table.to_base(Money.of("1", "JPY")) == Decimal("0.01")
    assert table.to_base(Money.of("0.25", "EUR")) == Decimal("0.25")
    assert table.to_base(Money.of("150", "JPY")) == Decimal("0.86")  # 0.855 -> 0.86 (even)
    assert table.to_base(Money.of("50", "JPY")) == Decimal("0.28")  # 0.285 -> 0.28 (even)
    assert table.to_base(Money.of("10", "BRL")) is None


def _rules(body: str, **kwargs: Any) -> RuleSet:
    from tests.eligibility.builders import rule_set_toml

    return parse_rule_set(rule_set_toml(body, **kwargs), "test.toml")


def test_bindings_expose_sections_enums_percentages_money_and_timestamps() -> None:
    rule_set = _rules(
        """
[money]
rates = { USD = "0.5" }

[[rules]]
id = "shape"
expression = '''
proposal.sector == "health"
&& firm.foreign_ownership_pct == 100.0
&& proposal.investment_commitment.amount == 2000000.0
&& proposal.investment_commitment.currency == "USD"
&& proposal.investment_commitment.eur == 1000000.0
&& incentives.grant.amount.eur == 125000.0
&& commitments.data_protection_attestation.attested_at < timestamp("2026-12-01T00:00:00Z")
&& size(documents) == 1
&& incentives.zone_space[0].unit_type == "gpu_rack_unit"'''
explanation = "Shape mismatch."
"""
    )
    assert rule_set.variables == {"proposal", "firm", "incentives", "commitments", "documents"}
    changes = {
        "proposal.investment_commitment": money("2000000", "USD"),
        "incentives.grant.amount": money("250000.00", "USD"),
    }
    assert rule_set.evaluate(content(changes)).outcome is EligibilityOutcome.ELIGIBLE


def test_an_erroring_rule_with_requires_asks_for_those_fields() -> None:
    rule_set = _rules(
        """
[[rules]]
id = "big_investment"
requires = ["proposal.investment_commitment"]
expression = "proposal.investment_commitment.eur > 10.0"
explanation = "Too small."
missing_explanation = "Restate the investment in euros."
"""
    )
    decision = rule_set.evaluate(content({"proposal.investment_commitment": money("5", "USD")}))
    outcome = decision.results[0]
    assert outcome.status is RuleStatus.NEEDS_INFORMATION
    assert outcome.missing_fields == ("proposal.investment_commitment",)
    assert outcome.explanation == "Restate the investment in euros."
    assert outcome.error is not None
    assert "overload" in outcome.error.lower() or "null" in outcome.error.lower()
    assert decision.outcome is EligibilityOutcome.NEEDS_INFORMATION


def test_an_erroring_rule_without_requires_fails_with_its_explanation() -> None:
    rule_set = _rules(
        """
[[rules]]
id = "trains_many"
expression = "commitments.training.engineers_per_year > 5"
explanation = "The program needs a training commitment for more than 5 engineers a year."
"""
    )
    # Errors when training is null: flagged when the file is checked...
    assert any("trains_many" in w for w in rule_set.warnings)
    # ...and, when evaluated, a failure with the rule's explanation, never a crash or a pass.
    decision = rule_set.evaluate(content({"commitments.training": None}))
    outcome = decision.results[0]
    assert outcome.status is RuleStatus.FAILED
    assert outcome.explanation.startswith("The program needs a training commitment")
    assert outcome.error is not None
    assert decision.outcome is EligibilityOutcome.INELIGIBLE


def test_a_non_boolean_result_is_an_error_not_a_pass() -> None:
    rule_set = _rules(
        """
[[rules]]
id = "jobs"
expression = "proposal.local_jobs > 0 ? true : 'none'"
explanation = "The proposal creates no local jobs."
"""
    )
    outcome = rule_set.evaluate(content({"proposal.local_jobs": 0})).results[0]
    assert outcome.status is RuleStatus.FAILED
    assert outcome.error is not None
    assert "not a bool" in outcome.error


def test_default_explanations_for_pass_and_missing() -> None:
    rule_set = _rules(
        """
[[rules]]
id = "described"
description = "The proposal creates local jobs."
requires = ["commitments.training"]
expression = "proposal.local_jobs > 0"
explanation = "No local jobs."

[[rules]]
id = "bare"
expression = "true"
explanation = "Never fails."
"""
    )
    passed = rule_set.evaluate(content()).results
    assert passed[0].explanation == "Met: The proposal creates local jobs."
    assert passed[1].explanation == "The application meets this rule."
    missing = rule_set.evaluate(content({"commitments.training": None})).results[0]
    assert missing.explanation == (
        "More information is needed to assess this rule; please complete: commitments.training."
    )


def test_parameters_are_bound_as_params() -> None:
    rule_set = _rules(
        """
[parameters]
threshold = 39
names = ["a", "b"]
nested = { flag = true }

[[rules]]
id = "uses_params"
expression = "proposal.local_jobs > params.threshold && 'a' in params.names && params.nested.flag"
explanation = "Too few jobs."
"""
    )
    # Compiled into the programs as literals: only the content is bound per application.
    assert rule_set.variables == {"proposal"}
    assert rule_set.evaluate(content()).outcome is EligibilityOutcome.ELIGIBLE
    assert as_written(rule_set).evaluate(content()).outcome is EligibilityOutcome.ELIGIBLE
    changes = {"proposal.local_jobs": 39}
    assert rule_set.evaluate(content(changes)).outcome is EligibilityOutcome.INELIGIBLE


# --- narrowed bindings ----------------------------------------------------------------------

#: Contents that take different paths through the shipped rules.
VARIED_CHANGES: list[dict[str, Any]] = [
    {},
    {"proposal.investment_commitment": money("1200000.00")},
    {"proposal.investment_commitment": money("900000.00", "USD")},
    {"proposal.investment_commitment": money("5000000.00", "JPY")},
    {"commitments.responsible_ai_attestation": None},
    {"commitments.training": None},
    {"firm.registration_number": "x"},
    {"firm.country_of_incorporation": "IR"},
    {"documents": []},
    {"documents[0].kind": "other"},
    {"firm.parent_companies[0].country": "IR"},
    {"firm.parent_companies": []},
    {"commitments.training": None, "commitments.university_partnerships": []},
    {"commitments.training": None, "commitments.exchange_programs": []},
    {
        "commitments.training": None,
        "commitments.university_partnerships": [],
        "commitments.exchange_programs": [],
    },
    {"proposal.sector": "other"},
]


@pytest.mark.parametrize("changes", VARIED_CHANGES)
@pytest.mark.parametrize("on", [V2026, V2027])
def test_narrowed_bindings_decide_exactly_as_whole_sections(
    shipped: RuleCatalog, changes: dict[str, Any], on: date
) -> None:
    rule_set = shipped.in_force(on)
    assert rule_set.fields  # the shipped rules are narrowed
    assert "params" not in rule_set.variables  # and their parameters compiled in
    application = content(changes)
    written = as_written(rule_set)
    assert rule_set.evaluate(application) == written.evaluate(application)
    # Submitted when the rule set is in force: the precomputed instants decide.
    at = datetime.combine(on, datetime.min.time(), UTC)
    assert rule_set.evaluate(application, at) == written.evaluate(application, at)


def as_written(rule_set: RuleSet) -> RuleSet:
    """``rule_set`` as parsed before it was made cheaper: whole sections, params bound, every
    expression compiled as written (``matches`` and ``months_before`` CEL calls)."""
    variables = {name for r in rule_set.rules for name in cel.compile(r.expression).variables()}
    return dataclasses.replace(
        rule_set,
        fields={},
        variables=rule_set.variables | {"params"} | (variables & {"submitted_at"}),
        functions={"months_before": months_before},
        instants=(),
        fallback=None,
        rules=tuple(
            dataclasses.replace(r, program=cel.compile(r.expression)) for r in rule_set.rules
        ),
    )


def test_only_the_fields_some_rule_reads_are_converted(shipped: RuleCatalog) -> None:
    rule_set = shipped.in_force(V2026)
    bindings = rule_set._bindings(content({}))
    assert "legal_name" not in bindings["firm"]
    assert "registration_number" in bindings["firm"]
    # Money is converted whole.
    assert set(bindings["proposal"]["investment_commitment"]) == {"amount", "currency", "eur"}
    # Of a list a macro iterates, each element has what the macro's body reads of it.
    assert bindings["documents"] == [{"kind": "business_registration"}]
    assert bindings["firm"]["parent_companies"] == [{"country": "DE"}]
    # Of a list only measured, the elements have nothing.
    assert bindings["commitments"]["university_partnerships"] == [{}]
    assert bindings["commitments"]["data_protection_attestation"] == {"accepted": True}


def test_macros_and_sizes_narrow_a_list_to_what_is_read_of_its_elements() -> None:
    rule_set = parse_rule_set(
        rule_set_toml(
            """
[[rules]]
id = "narrowed"
expression = """
            + '"""'
            + """documents.exists(d, d.kind == 'x (y)' && size(d.title) > 0)
  || firm.parent_companies.size() > 1
  || size(commitments.exchange_programs) > 0
  || commitments.university_partnerships.all(u, u.university != '')
  || documents.map(d, d).size() > 9"""
            + '"""'
            + """
explanation = "x"
"""
        )
    )
    assert rule_set.fields == {
        # The last ``documents.map(d, d)`` reads whole elements: that wins.
        "documents": {"[]": None},
        "firm": {"parent_companies": {}},
        "commitments": {
            "exchange_programs": {},
            "university_partnerships": {"[]": {"university": None}},
        },
    }
    application = content({})
    assert rule_set.evaluate(application) == as_written(rule_set).evaluate(application)
    bindings = rule_set._bindings(application)
    assert bindings["firm"]["parent_companies"] == [{}]
    assert set(bindings["documents"][0]) >= {"kind", "title", "document_id"}


def test_a_list_read_by_index_or_whole_is_converted_whole() -> None:
    rule_set = parse_rule_set(
        rule_set_toml(
            """
[[rules]]
id = "whole"
expression = '''size(documents) > 0 && documents[0].kind == 'business_registration'
  && firm.parent_companies == []'''
explanation = "x"
"""
        )
    )
    assert rule_set.fields == {"documents": None, "firm": {"parent_companies": None}}


def test_a_section_read_other_than_by_its_fields_is_converted_whole() -> None:
    rule_set = parse_rule_set(
        rule_set_toml(
            """
[[rules]]
id = "named"
expression = "firm.exists(k, k == 'legal_name') && proposal.local_jobs > 0"
explanation = "x"
"""
        )
    )
    assert rule_set.fields == {"firm": None, "proposal": {"local_jobs": None}}
    bindings = rule_set._bindings(content({}))
    assert "legal_name" in bindings["firm"]
    assert set(bindings["proposal"]) == {"local_jobs"}


def test_parameters_are_compiled_in_as_literals_and_decide_the_same() -> None:
    rule_set = parse_rule_set(
        rule_set_toml(
            """
[[rules]]
id = "named"
expression = "firm.legal_name != params.banned && proposal.local_jobs >= params.jobs.minimum"
explanation = "x"
""",
            extra='[parameters]\nbanned = "Zo\u00eb \\"Q\\" \\\\ GmbH"\njobs = { minimum = 2.5 }\n',
        )
    )
    assert rule_set.parameters == {"banned": 'Zo\u00eb "Q" \\ GmbH', "jobs": {"minimum": 2.5}}
    assert "params" not in rule_set.variables
    for changes in ({}, {"firm.legal_name": 'Zo\u00eb "Q" \\ GmbH'}, {"proposal.local_jobs": 2}):
        application = content(changes)
        assert rule_set.evaluate(application) == as_written(rule_set).evaluate(application)
    assert [r.passed for r in rule_set.evaluate(content({"proposal.local_jobs": 2})).results] == [
        False
    ]


def test_parameters_used_other_than_by_name_stay_bound() -> None:
    rule_set = parse_rule_set(
        rule_set_toml(
            """
[[rules]]
id = "sized"
expression = "size(params) == 1 && proposal.local_jobs >= params.jobs"
explanation = "x"
""",
            extra="[parameters]\njobs = 1\n",
        )
    )
    assert "params" in rule_set.variables
    assert rule_set.evaluate(content({})).results[0].passed


# --- precompiled patterns -------------------------------------------------------------------

REGISTRATION_PATTERN = "^[A-Za-z0-9][A-Za-z0-9 ./-]*[0-9][A-Za-z0-9 ./-]*$"
PATTERN_SAMPLES = [
    "",
    "\n",
    "HRB 123456",
    "HRB 123456\n",
    "\nHRB 123456",
    "HRB",
    "1",
    "a1",
    "x-1/2.3",
    "-12",
    "ab\ncd",
    "Ünïcode 12",
    "\uff11\uff12\uff13",  # full-width digits
    "ab",
    "cd",
    "abe",
    "e",
    "xay",
    "x\ny",
]


@pytest.mark.parametrize(
    "pattern", [REGISTRATION_PATTERN, "a|b", "^x.y$", "[^0-9]+", "^(ab|cd)?e$", "b$", "^$"]
)
def test_a_precompiled_pattern_matches_what_cel_matches(pattern: str) -> None:
    compiled = python_pattern(pattern)
    assert compiled is not None
    program = cel.compile(f"s.matches('{pattern}')")
    for sample in PATTERN_SAMPLES:
        assert (compiled.search(sample) is not None) is program.execute({"s": sample}), sample


@pytest.mark.parametrize(
    "pattern",
    [
        *("\\d+", "(a+)+", "(ab)*", "a{2}", "(?i)a"),
        *("[a&&b]", "[a--b]", "[[:alpha:]]", "a*b*c*", "[]a]"),
    ],
)
def test_a_pattern_python_might_read_otherwise_is_left_to_cel(pattern: str) -> None:
    assert python_pattern(pattern) is None


def test_the_shipped_registration_rule_runs_its_pattern_compiled_once(
    shipped: RuleCatalog,
) -> None:
    for on in (V2026, V2027):
        rule_set = shipped.in_force(on)
        rule = next(r for r in rule_set.rules if r.id == "registration_number")
        assert rule.program is not None
        assert "matches" in rule.expression  # the file is unchanged
        assert "matches" not in rule.program.functions()


def test_a_pattern_outside_the_subset_keeps_cels_matches() -> None:
    rule_set = parse_rule_set(
        rule_set_toml(
            """
[[rules]]
id = "digits"
expression = 'firm.registration_number.matches("[0-9]{3}")'
explanation = "x"
"""
        )
    )
    rule = rule_set.rules[0]
    assert rule.program is not None
    assert "matches" in rule.program.functions()
    assert rule_set.evaluate(content({})).outcome is EligibilityOutcome.ELIGIBLE
    changes = {"firm.registration_number": "HRB 12"}
    assert rule_set.evaluate(content(changes)).outcome is EligibilityOutcome.INELIGIBLE


def test_a_pattern_call_inside_a_string_literal_is_left_as_it_is() -> None:
    rule_set = parse_rule_set(
        rule_set_toml(
            """
[[rules]]
id = "literal"
expression = \'\'\'firm.registration_number.matches('^H') && "x.matches('a')" != ""\'\'\'
explanation = "x"
"""
        )
    )
    rule = rule_set.rules[0]
    assert rule.program is not None
    assert "matches" not in rule.program.functions()
    assert "\"x.matches('a')\"" in rule.compiled_from
    assert rule_set.evaluate(content({})).outcome is EligibilityOutcome.ELIGIBLE
    changes = {"firm.registration_number": "X1"}
    assert rule_set.evaluate(content(changes)).outcome is EligibilityOutcome.INELIGIBLE


def test_a_precompiled_pattern_on_a_value_that_is_not_a_string_is_an_error() -> None:
    rule_set = parse_rule_set(
        rule_set_toml(
            """
[[rules]]
id = "pattern"
expression = "firm.registration_number.matches('^H') || firm.foreign_ownership_pct.matches('^H')"
explanation = "x"
"""
        )
    )
    rule = rule_set.rules[0]
    assert rule.program is not None
    assert "matches" not in rule.program.functions()
    outcome = rule_set.evaluate(content({"firm.registration_number": "X1"})).results[0]
    assert outcome.status is RuleStatus.FAILED
    assert outcome.error is not None


# --- precomputed instants -------------------------------------------------------------------


def test_the_shipped_attestation_windows_read_an_instant_computed_once(
    shipped: RuleCatalog,
) -> None:
    rule_set = shipped.in_force(V2027)
    assert rule_set.instants == (12,)
    assert "months_before" not in rule_set.functions
    rule = next(r for r in rule_set.rules if r.id == "data_protection_attestation_current")
    assert rule.program is not None
    assert "months_before" in rule.expression  # the file is unchanged
    assert "months_before" not in rule.program.functions()


@pytest.mark.parametrize(
    ("attested", "submitted", "passes"),
    [
        (datetime(2023, 2, 28, tzinfo=UTC), datetime(2024, 2, 29, tzinfo=UTC), True),
        (datetime(2023, 2, 27, 23, 59, tzinfo=UTC), datetime(2024, 2, 29, tzinfo=UTC), False),
        (datetime(2025, 6, 1, tzinfo=UTC), datetime(2026, 6, 1, tzinfo=UTC), True),
        (datetime(2025, 5, 31, tzinfo=UTC), datetime(2026, 6, 1, tzinfo=UTC), False),
    ],
)
def test_a_precomputed_instant_decides_as_the_call(
    shipped: RuleCatalog, attested: datetime, submitted: datetime, passes: bool
) -> None:
    rule_set = shipped.in_force(V2027)
    application = content({"commitments.data_protection_attestation.attested_at": attested})
    decision = rule_set.evaluate(application, submitted)
    assert result(decision, "data_protection_attestation_current").passed is passes
    assert decision == as_written(rule_set).evaluate(application, submitted)


def test_without_a_submission_time_the_rule_set_as_written_decides(shipped: RuleCatalog) -> None:
    rule_set = shipped.in_force(V2027)
    assert rule_set.fallback is not None
    decision = rule_set.evaluate(content({}))
    outcome = result(decision, "data_protection_attestation_current")
    assert outcome.status is RuleStatus.NEEDS_INFORMATION
    assert outcome.error is not None
    assert "months_before" in outcome.error  # CEL's own error, from the call as written
    assert decision == as_written(rule_set).evaluate(content({}))
