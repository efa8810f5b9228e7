"""The pure parts of the later pages: charts, award wording, the milestone form, instants."""

from __future__ import annotations

from decimal import Decimal

from contracts.status import Status
from services.portal import charts, language
from services.portal.pages.auditor import _instant
from services.portal.pages.firm import milestone_form


def entry(i: int, cause: str, amount: str) -> dict[str, object]:
    return {
        "id": i,
        "at": f"2026-12-0{i}T10:00:00Z",
        "cause": cause,
        "amount": {"amount": amount, "currency": "EUR"},
    }


def test_a_budgets_balances_follow_its_ledger_entry_by_entry() -> None:
    steps = charts.balances_over_time(
        [
            entry(3, "pay", "100.00"),  # out of order on purpose: the ledger's order counts
            entry(1, "top_up", "1000.00"),
            entry(2, "reserve", "250.00"),
            entry(4, "release", "150.00"),
        ]
    )
    assert [s[1] for s in steps] == [
        {"free": Decimal(1000), "reserved": Decimal(0), "paid": Decimal(0)},
        {"free": Decimal(750), "reserved": Decimal(250), "paid": Decimal(0)},
        {"free": Decimal(750), "reserved": Decimal(150), "paid": Decimal(100)},
        {"free": Decimal(900), "reserved": Decimal(0), "paid": Decimal(100)},
    ]
    chart = charts.time_chart(steps, width=400, height=100)
    assert chart.top == Decimal(1000)
    assert [s.name for s in chart.series] == ["free", "reserved", "paid"]
    free = chart.series[0].points.split()
    assert free[0] == "0.0,100.0"
    assert free[1:3] == ["0.0,0.0", "100.0,0.0"]  # 1000 of 1000: the top, over the first step
    assert free[-1] == "400.0,10.0"  # 900 of 1000 after the last entry
    assert len({s.dash for s in chart.series}) == 3, "lines differ by more than colour"
    assert charts.time_chart([]).series == []


def test_a_zone_bar_is_in_proportion_to_capacity() -> None:
    bar = charts.stacked_bar({"allocated": 20, "held": 4, "free": 24}, 480)
    assert [(s.name, s.x, s.width) for s in bar] == [
        ("allocated", 0.0, 200.0),
        ("held", 200.0, 40.0),
        ("free", 240.0, 240.0),
    ]
    assert [s.width for s in charts.stacked_bar({"allocated": 0, "held": 0, "free": 0}, 480)] == [
        0.0,
        0.0,
        0.0,
    ]


def test_every_status_and_award_state_reads_in_words() -> None:
    assert set(language.STATUS) == {s.value for s in Status}
    assert set(language.STATUS_COLOUR) == {s.value for s in Status}
    for status in Status:
        said = language.where_it_is(
            {"status": status.value, "status_changed_at": "2026-03-03T10:00:00Z"}
        )
        assert "_" not in said, said
    assert language.money({"amount": "1250000.50", "currency": "EUR"}) == "1,250,000.50 EUR"
    assert language.units(4, "gpu_rack_unit") == "4 GPU rack units"
    assert language.event("application.offer_accepted") == "Application: offer accepted"


def test_a_refused_reassignment_names_what_stops_the_chosen_reviewer() -> None:
    detail = (
        "rev.tanaka@gaip.example declares an affiliation or ownership interest in Acme Vision "
        "AI GmbH (the applicant or its parent company) and may not decide this application."
    )
    said = language.reassignment_refusal(
        "conflict_of_interest", detail, "rev.tanaka@gaip.example", language.conflicts_in(detail)
    )
    assert said == (
        "rev.tanaka@gaip.example declared an interest in Acme Vision AI GmbH, so they cannot "
        "review this application."
    )
    assert "escalated" in language.reassignment_refusal("invalid_request", "x", "r")


def award(**changes: object) -> dict[str, object]:
    base: dict[str, object] = {
        "award_state": "open",
        "tranches": [
            {"sequence": 1, "milestone": "signing", "state": "paid"},
            {"sequence": 2, "milestone": "milestone 1", "state": "scheduled"},
            {"sequence": 3, "milestone": "milestone 2", "state": "scheduled"},
        ],
        "milestones": [],
        "milestone_due": 2,
    }
    return {**base, **changes}


def test_the_milestone_form_offers_the_tranche_due_while_reporting_is_allowed() -> None:
    view = {"allowed_actions": ["report_milestone", "withdraw"], "award": award()}
    assert milestone_form(view) == {"sequence": 2, "milestone": "milestone 1", "state": "scheduled"}
    later = {**view, "award": award(milestone_due=3)}
    assert milestone_form(later) == {
        "sequence": 3,
        "milestone": "milestone 2",
        "state": "scheduled",
    }
    waiting = award(milestones=[{"sequence": 2, "state": "reported"}], milestone_due=None)
    assert milestone_form({**view, "award": waiting}) is None
    assert milestone_form({**view, "allowed_actions": ["withdraw"]}) is None
    assert milestone_form({**view, "award": None}) is None


def test_a_chosen_instant_is_read_as_utc() -> None:
    assert _instant("") == (None, None)
    assert _instant("2026-12-01T10:00") == ("2026-12-01T10:00:00Z", None)
    assert _instant("2026-12-01T10:00:30") == ("2026-12-01T10:00:30Z", None)
    instant, error = _instant("yesterday")
    assert instant is None
    assert error is not None
