"""The ledger on a real database against the ledger in memory: any sequence of budget top-ups,
awards, payouts and cancellations leaves the same balances, no account that must not go
negative does, and all entries sum to zero. Awards the budget cannot cover wait, and top-ups
open them first come first served, never beyond the budget."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import invariant, rule

from contracts.envelope import utcnow
from contracts.money import Money
from contracts.v1.disbursement import CancelAward
from services.disbursement import commands
from services.disbursement.commands import RailAnswer
from services.disbursement.domain import (
    AccountKind,
    Ledger,
    Overdrawn,
    PaymentState,
    award_account,
    pay,
    release,
    reserve,
    top_up,
)
from services.disbursement.main import MIGRATIONS
from services.kit.errors import BusinessRefusal
from services.kit.uow import UnitOfWork
from tests.disbursement.helpers import ADMIN, WORKFLOW, award_command, stored
from tests.disbursement.helpers import release as release_tranche
from tests.stateful import DatabaseMachine, TemplateDatabase
from tests.tiers import examples

AWARDS = ["w1", "w2", "w3", "w4"]
BUDGET = "grant-2027"


async def _seed(uow: UnitOfWork) -> None:
    await commands.create_budget(
        uow,
        incentive_type="grant",
        fiscal_year=2027,
        amount=Money.of("100", "EUR"),
        origin=ADMIN,
        now=utcnow(),
    )


class LedgerOnDatabase(DatabaseMachine):
    template = TemplateDatabase(MIGRATIONS, _seed)

    def __init__(self) -> None:
        super().__init__()
        self.ledger = Ledger()
        self.ledger.apply(top_up(BUDGET, Decimal(100)))
        self.opened: dict[str, list[Decimal]] = {}
        self.cancelled: set[str] = set()
        self.paid: dict[str, int] = {}
        #: Awards waiting for the budget, first come first: (award, total, tranche amounts).
        self.waiting: list[tuple[str, int, list[Decimal]]] = []

    @rule(amount=st.integers(1, 80))
    def top_up(self, amount: int) -> None:
        self.ledger.apply(top_up(BUDGET, Decimal(amount)))
        while self.waiting:
            award, total, tranches = self.waiting[0]
            try:
                self.ledger.apply(reserve(BUDGET, award, Decimal(total)))
            except Overdrawn:
                break
            self.waiting.pop(0)
            self.opened[award] = tranches
        self.in_unit(
            lambda uow: commands.top_up_budget(
                uow, BUDGET, Money.of(amount, "EUR"), ADMIN, utcnow()
            )
        )

    @rule(award=st.sampled_from(AWARDS), total=st.integers(1, 90))
    def open_award(self, award: str, total: int) -> None:
        command = award_command(award, f"{total}.00", BUDGET)
        if award not in self.opened and all(w[0] != award for w in self.waiting):
            tranches = [t.amount.amount for t in command.tranches]
            try:
                self.ledger.apply(reserve(BUDGET, award, Decimal(total)))
                self.opened[award] = tranches
            except Overdrawn:
                self.waiting.append((award, total, tranches))
        self.in_unit(lambda uow: commands.open_award(uow, command, WORKFLOW, utcnow()))

    @rule(award=st.sampled_from(AWARDS))
    def pay_next_tranche(self, award: str) -> None:
        if award not in self.opened or award in self.cancelled:
            return
        sequence = self.paid.get(award, 0) + 1
        if sequence > len(self.opened[award]):
            return
        payment_id = self.await_(
            release_tranche(_Db(self), award, sequence)  # type: ignore[arg-type]
        )
        assert payment_id is not None
        self.in_unit(
            lambda uow: commands.settle(
                uow, payment_id, RailAnswer(PaymentState.PAID, reference="r"), utcnow()
            )
        )
        amount = self.opened[award][sequence - 1]
        if amount > 0:
            self.ledger.apply(pay(award, amount))
        self.paid[award] = sequence

    @rule(award=st.sampled_from(AWARDS))
    def cancel(self, award: str) -> None:
        command = CancelAward(
            award_id=award,
            application_id=f"app-{award}",
            reason_code="administrative",
            reason="Cancelled.",
        )
        if any(w[0] == award for w in self.waiting):  # leaves the line, nothing to give back
            self.waiting = [w for w in self.waiting if w[0] != award]
        try:
            self.in_unit(lambda uow: commands.cancel_award(uow, command, WORKFLOW, utcnow()))
        except BusinessRefusal:
            assert award not in self.opened or self.paid.get(award) == len(self.opened[award])
            return
        if award in self.opened and award not in self.cancelled:
            rest = self.ledger.balance(award_account(award, AccountKind.RESERVED))
            if rest > 0:
                self.ledger.apply(release(BUDGET, award, rest))
            self.cancelled.add(award)

    @invariant()
    def the_waitlist_agrees(self) -> None:
        rows = self.rows("SELECT award_id FROM budget_waitlist ORDER BY position")
        assert [r[0] for r in rows] == [w[0] for w in self.waiting]

    @invariant()
    def the_books_agree_and_balance(self) -> None:
        rows = self.rows("SELECT id, kind, balance FROM ledger_accounts")
        balances = {r[0]: stored(r[2]) for r in rows}
        for _, kind, balance in rows:
            assert stored(balance) >= 0 or kind == "funding"
        assert sum(balances.values(), Decimal(0)) == 0
        expected = {a: b for a, b in self.ledger.balances.items()}
        assert {a: b for a, b in balances.items() if b or a in expected} == {
            a: b for a, b in expected.items() if b or a in balances
        }


class _Db:
    """The slice of the test database helper that ``release`` needs."""

    def __init__(self, machine: LedgerOnDatabase) -> None:
        self.uow = machine.uow


TestLedgerOnDatabase = LedgerOnDatabase.TestCase
TestLedgerOnDatabase.settings = settings(
    max_examples=examples(30), stateful_step_count=30, deadline=None
)
