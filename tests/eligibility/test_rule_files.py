"""Invalid rule-set files are refused with every problem named; folders load as catalogs."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.eligibility.domain import RuleSetError, parse_rule_set
from services.eligibility.rulefiles import load_catalog, read_rule_sets
from tests.eligibility.builders import PASSING_RULE, rule_set_toml


def problems_of(data: bytes) -> tuple[str, ...]:
    with pytest.raises(RuleSetError) as caught:
        parse_rule_set(data, "bad.toml")
    assert caught.value.source == "bad.toml"
    return caught.value.problems


def assert_one_problem_like(data: bytes, *fragments: str) -> None:
    problems = problems_of(data)
    assert len(problems) == 1, problems
    for fragment in fragments:
        assert fragment in problems[0], problems[0]


def test_a_valid_minimal_file_parses() -> None:
    rule_set = parse_rule_set(rule_set_toml(PASSING_RULE), "ok.toml")
    assert (rule_set.id, rule_set.version, rule_set.source) == ("test-rules", "1", "ok.toml")
    assert rule_set.money.rates == {"EUR": 1}  # the base currency, implicitly


def test_not_toml() -> None:
    assert_one_problem_like(b"[rule_set\nid = 1", "not valid TOML")
    assert_one_problem_like(b"\xff\xfe", "not UTF-8")


def test_cel_that_does_not_compile() -> None:
    rules = '[[rules]]\nid = "broken"\nexpression = "proposal.local_jobs >"\nexplanation = "x"\n'
    assert_one_problem_like(rule_set_toml(rules), "rule #1 'broken'", "CEL does not compile")


def test_unknown_variables_are_refused_but_macro_variables_are_not() -> None:
    rules = '[[rules]]\nid = "typo"\nexpression = "propsal.local_jobs > 0"\nexplanation = "x"\n'
    assert_one_problem_like(rule_set_toml(rules), "unknown variable(s) propsal")
    macro = (
        '[[rules]]\nid = "macro"\nexplanation = "x"\n'
        "expression = \"documents.exists(d, d.kind == 'business_registration')\"\n"
    )
    parse_rule_set(rule_set_toml(macro), "ok.toml")


def test_duplicate_rule_ids() -> None:
    assert_one_problem_like(
        rule_set_toml(PASSING_RULE + PASSING_RULE),
        "duplicate rule id 'has_jobs' (rules #1 and #2)",
    )


@pytest.mark.parametrize("explanation", [None, '""', '"   "'])
def test_every_rule_needs_an_explanation(explanation: str | None) -> None:
    line = f"explanation = {explanation}\n" if explanation else ""
    rules = f'[[rules]]\nid = "silent"\nexpression = "true"\n{line}'
    assert_one_problem_like(rule_set_toml(rules), "rule #1 'silent'", "no explanation")


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ('"2026-13-01"', "must be a date (YYYY-MM-DD), got '2026-13-01'"),
        ("2026-01-01T00:00:00Z", "not a date-time"),
        ('"soon"', "got 'soon'"),
        ("20260101", "got 20260101"),
    ],
)
def test_bad_effective_dates(value: str, fragment: str) -> None:
    assert_one_problem_like(rule_set_toml(PASSING_RULE, effective_from=value), fragment)


def test_effective_date_as_a_string_is_accepted() -> None:
    rule_set = parse_rule_set(rule_set_toml(PASSING_RULE, effective_from='"2026-03-01"'), "x")
    assert str(rule_set.effective_from) == "2026-03-01"


def test_missing_header_and_rules() -> None:
    problems = problems_of(b"")
    assert "missing [rule_set] table" in problems
    assert any("no rules" in p for p in problems)
    assert "[rule_set] id is missing" in problems
    assert "[rule_set] version is missing" in problems
    assert any("effective_from is missing" in p for p in problems)


def test_unknown_keys_catch_typos() -> None:
    rules = PASSING_RULE + 'explaination = "typo"\n'
    assert_one_problem_like(rule_set_toml(rules), "unknown key 'explaination'")
    assert_one_problem_like(
        rule_set_toml(PASSING_RULE, extra="[params]\nx = 1\n"), "unknown key 'params'"
    )


@pytest.mark.parametrize(
    ("requires", "fragment"),
    [
        ('["proposal.budget"]', "which the application content lacks"),
        ('["Proposal.Sector"]', "is not a field path"),
        ('["proposal.sector", "proposal.sector"]', "lists a field twice"),
        ('"proposal.sector"', "must be a list of field paths"),
        ('["proposal.sector[0]"]', "which the application content lacks"),
    ],
)
def test_requires_must_name_contract_fields(requires: str, fragment: str) -> None:
    rules = PASSING_RULE + f"requires = {requires}\n"
    assert_one_problem_like(rule_set_toml(rules), fragment)


def test_requires_paths_may_index_lists_and_enter_money() -> None:
    rules = (
        PASSING_RULE
        + 'requires = ["documents[0].kind", "proposal.investment_commitment.currency"]\n'
    )
    rule_set = parse_rule_set(rule_set_toml(rules), "ok.toml")
    assert rule_set.rules[0].requires == (
        "documents[0].kind",
        "proposal.investment_commitment.currency",
    )
    assert rule_set.warnings == ()


def test_needs_information_failure_requires_fields() -> None:
    rules = PASSING_RULE + 'failure = "needs_information"\n'
    assert_one_problem_like(rule_set_toml(rules), "needs the fields in requires")
    assert_one_problem_like(
        rule_set_toml(PASSING_RULE + 'failure = "maybe"\n'), "failure 'maybe' must be"
    )


@pytest.mark.parametrize(
    ("money", "fragment"),
    [
        ("[money]\nrates = { USD = 0.92 }\n", "floats are inexact"),
        ('[money]\nrates = { XYZ = "1" }\n', "not an ISO 4217 currency code"),
        ('[money]\nrates = { XAU = "3500" }\n', "not a currency money can be in"),
        ('[money]\nbase_currency = "XDR"\n', "not a currency money can be in"),
        ('[money]\nrates = { USD = "-1" }\n', "must be a positive number"),
        ('[money]\nrates = { USD = "abc" }\n', "is not a decimal number"),
        ('[money]\nbase_currency = "EUR"\nrates = { EUR = "2" }\n', "base currency's rate"),
        ('[money]\nbase_currency = "EURO"\n', "not an ISO 4217 currency code"),
    ],
)
def test_exchange_rates_are_exact_and_valid(money: str, fragment: str) -> None:
    assert_one_problem_like(rule_set_toml(PASSING_RULE, extra=money), fragment)


def test_parameters_must_be_cel_values() -> None:
    extra = "[parameters]\nstart = 2026-01-01\n"
    assert_one_problem_like(rule_set_toml(PASSING_RULE, extra=extra), "[parameters] start")


def test_a_rule_that_errors_on_the_complete_example_is_refused() -> None:
    rules = (
        '[[rules]]\nid = "wrong_type"\nexpression = "proposal.local_jobs + 0.5 > 1.0"\n'
        'explanation = "x"\n'
    )
    assert_one_problem_like(
        rule_set_toml(rules), "'wrong_type' errors on the complete example application"
    )
    non_bool = '[[rules]]\nid = "jobs"\nexpression = "proposal.local_jobs"\nexplanation = "x"\n'
    assert_one_problem_like(rule_set_toml(non_bool), "not a bool")


def test_all_problems_are_reported_together() -> None:
    rules = (
        PASSING_RULE
        + PASSING_RULE
        + '[[rules]]\nid = "broken"\nexpression = "(("\nexplanation = "x"\n'
        + '[[rules]]\nid = "silent"\nexpression = "true"\n'
    )
    problems = problems_of(rule_set_toml(rules, effective_from='"someday"', version="a b"))
    assert len(problems) == 5, problems
    assert any("[rule_set] version 'a b'" in p for p in problems)


def test_folders_load_as_a_catalog_and_report_every_file(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_bytes(rule_set_toml(PASSING_RULE, version="1"))
    (tmp_path / "b.toml").write_bytes(
        rule_set_toml(PASSING_RULE, version="2", effective_from="2027-01-01")
    )
    (tmp_path / "notes.txt").write_text("not a rule set")
    catalog = load_catalog(tmp_path)
    assert [r.version for r in catalog.rule_sets] == ["1", "2"]

    (tmp_path / "c.toml").write_bytes(b"nonsense = [")
    (tmp_path / "d.toml").write_bytes(rule_set_toml(PASSING_RULE + PASSING_RULE, version="4"))
    with pytest.raises(RuleSetError) as caught:
        read_rule_sets([tmp_path])
    assert [p.split(":")[0] for p in caught.value.problems] == ["c.toml", "d.toml"]


def test_empty_or_missing_folders(tmp_path: Path) -> None:
    with pytest.raises(RuleSetError, match=r"no \*\.toml rule-set file"):
        load_catalog(tmp_path)
    with pytest.raises(RuleSetError, match="no such file or folder"):
        load_catalog(tmp_path / "missing")
