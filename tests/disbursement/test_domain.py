"""Tranche arithmetic and the double-entry ledger, in memory."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from contracts.iso import minor_units
from services.disbursement.domain import (
    AccountKind,
    Ledger,
    Overdrawn,
    ScheduleError,
    Share,
    Transfer,
    award_account,
    budget_account,
    kind_of,
    may_go_negative,
    parse_schedule,
    pay,
    release,
    reserve,
    split,
    top_up,
)
from tests.tiers import examples

SCHEDULE = parse_schedule("signing:40,milestone 1:30,milestone 2:30")


def test_the_default_schedule_splits_exactly() -> None:
    assert split(Decimal("250000.00"), "EUR", SCHEDULE) == [
        Decimal("100000.00"),
        Decimal("75000.00"),
        Decimal("75000.00"),
    ]


def test_rounding_goes_down_and_the_remainder_to_the_last_tranche() -> None:
    thirds = parse_schedule("a:33.33,b:33.33,c:33.34")
    assert split(Decimal("100.01"), "EUR", thirds) == [
        Decimal("33.33"),
        Decimal("33.33"),
        Decimal("33.35"),
    ]
    assert split(Decimal("1001"), "JPY", SCHEDULE) == [Decimal(400), Decimal(300), Decimal(301)]
    assert split(Decimal("1.001"), "KWD", SCHEDULE)[-1] == Decimal("0.301")


@pytest.mark.parametrize(
    "text", ["signing:40,m1:30", "signing:40,m1:70,m2:-10", "signing", ":100", "a:x"]
)
def test_a_schedule_must_be_whole(text: str) -> None:
    with pytest.raises(ScheduleError):
        parse_schedule(text)


def test_an_amount_finer_than_the_minor_unit_is_refused() -> None:
    with pytest.raises(ScheduleError):
        split(Decimal("10.5"), "JPY", SCHEDULE)


@given(
    cents=st.integers(1, 10**12),
    weights=st.lists(st.integers(1, 50), min_size=1, max_size=6),
    currency=st.sampled_from(["EUR", "JPY", "KWD", "CLF"]),
)
def test_tranches_always_add_up_and_are_in_minor_units(
    cents: int, weights: list[int], currency: str
) -> None:
    total = Decimal(cents).scaleb(-minor_units(currency))
    scale = Decimal(100) / sum(weights)
    percents = [(Decimal(w) * scale).quantize(Decimal("0.0001")) for w in weights]
    percents[-1] = Decimal(100) - sum(percents[:-1], Decimal(0))
    if percents[-1] <= 0:
        return
    amounts = split(total, currency, [Share(str(i), p) for i, p in enumerate(percents)])
    assert sum(amounts, Decimal(0)) == total
    assert all(a >= 0 for a in amounts)
    assert all(a == a.quantize(Decimal(1).scaleb(-minor_units(currency))) for a in amounts)


def test_a_transfer_is_two_legs_that_sum_to_zero() -> None:
    transfer = reserve("b", "w", Decimal(5))
    assert sum(amount for _, amount in transfer.entries()) == 0
    with pytest.raises(ValueError, match="positive"):
        Transfer(transfer.cause, "x:available", "y:available", Decimal(0))
    with pytest.raises(ValueError, match="two accounts"):
        Transfer(transfer.cause, "x:available", "x:available", Decimal(1))


def test_an_overdraft_changes_nothing() -> None:
    ledger = Ledger()
    ledger.apply(top_up("b", Decimal(10)))
    with pytest.raises(Overdrawn):
        ledger.apply(reserve("b", "w", Decimal(11)))
    assert ledger.balance(budget_account("b", AccountKind.AVAILABLE)) == 10
    assert len(ledger.transfers) == 1


AWARDS = ["w1", "w2", "w3"]
amounts = st.integers(1, 1000).map(Decimal)


class LedgerMachine(RuleBasedStateMachine):
    """Any sequence of top-ups, reservations, payments and releases keeps the books."""

    def __init__(self) -> None:
        super().__init__()
        self.ledger = Ledger()

    def _try(self, transfer: Transfer) -> None:
        before = dict(self.ledger.balances)
        try:
            self.ledger.apply(transfer)
        except Overdrawn:
            assert self.ledger.balances == before

    @rule(amount=amounts)
    def top_up(self, amount: Decimal) -> None:
        self._try(top_up("b", amount))

    @rule(award=st.sampled_from(AWARDS), amount=amounts)
    def reserve(self, award: str, amount: Decimal) -> None:
        self._try(reserve("b", award, amount))

    @rule(award=st.sampled_from(AWARDS), amount=amounts)
    def pay(self, award: str, amount: Decimal) -> None:
        self._try(pay(award, amount))

    @precondition(lambda self: bool(self.ledger.transfers))
    @rule(award=st.sampled_from(AWARDS))
    def release_the_rest(self, award: str) -> None:
        rest = self.ledger.balance(award_account(award, AccountKind.RESERVED))
        if rest > 0:
            self.ledger.apply(release("b", award, rest))
            assert self.ledger.balance(award_account(award, AccountKind.RESERVED)) == 0

    @invariant()
    def no_account_that_must_not_go_negative_does(self) -> None:
        for account, balance in self.ledger.balances.items():
            assert balance >= 0 or may_go_negative(kind_of(account))

    @invariant()
    def all_entries_sum_to_zero(self) -> None:
        assert sum(self.ledger.balances.values(), Decimal(0)) == 0
        funded = -self.ledger.balance(budget_account("b", AccountKind.FUNDING))
        held = sum(
            (b for a, b in self.ledger.balances.items() if not a.endswith(":funding")),
            Decimal(0),
        )
        assert funded == held


TestLedgerMachine = LedgerMachine.TestCase
TestLedgerMachine.settings = settings(
    max_examples=examples(100), stateful_step_count=40, deadline=None
)
