"""Budgets, awards, tranches and the ledger on a real database: the database keeps the books."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa
from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError

from contracts.envelope import utcnow
from contracts.money import Money
from contracts.v1.disbursement import CancelAward, ChargeAward
from services.disbursement import commands
from services.disbursement.domain import AccountKind, award_account, budget_account
from services.kit.db import create_engine, create_session_factory
from services.kit.errors import BusinessRefusal, Conflict
from services.kit.uow import UnitOfWorkFactory
from tests.disbursement.helpers import (
    ADMIN,
    WORKFLOW,
    Db,
    award_command,
    disbursement_db,
    fund,
    open_award,
    release,
    stored,
)
from tests.kit.helpers import fresh_database

AVAILABLE = budget_account("grant-2027", AccountKind.AVAILABLE)


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Db]:
    async with disbursement_db(f"sqlite+aiosqlite:///{tmp_path / 'd.db'}") as db:
        yield db


async def _books_balance(db: Db) -> None:
    """Every balance is what its transfers made it, and no account that must not is negative."""
    accounts = await db.rows("SELECT id, kind, balance FROM ledger_accounts")
    total = Decimal(0)
    for account, kind, balance in accounts:
        credits = await db.scalar(
            "SELECT coalesce(sum(amount), 0) FROM ledger_transfers WHERE credit = :a", a=account
        )
        debits = await db.scalar(
            "SELECT coalesce(sum(amount), 0) FROM ledger_transfers WHERE debit = :a", a=account
        )
        assert stored(balance) == stored(credits) - stored(debits), account
        assert stored(balance) >= 0 or kind == "funding"
        total += stored(balance)
    assert total == 0
    await _movements_match_the_books(db)


async def _movements_match_the_books(db: Db) -> None:
    """Each ledger entry was staged as one ``ledger.transferred`` event, and those events alone
    give every balance."""
    movements = await db.movements()
    rows = await db.rows("SELECT id, cause, debit, credit, amount FROM ledger_transfers")
    assert sorted(m["entry_id"] for m in movements) == sorted(r[0] for r in rows)
    by_id = {r[0]: r for r in rows}
    rebuilt: dict[str, Decimal] = {}
    for m in movements:
        _id, cause, debit, credit, amount = by_id[m["entry_id"]]
        assert (m["cause"], m["debit"], m["credit"]) == (cause, debit, credit)
        assert Decimal(m["amount"]["amount"]) == stored(amount)
        rebuilt[debit] = rebuilt.get(debit, Decimal(0)) - Decimal(m["amount"]["amount"])
        rebuilt[credit] = rebuilt.get(credit, Decimal(0)) + Decimal(m["amount"]["amount"])
    live = {a: stored(b) for a, b in await db.rows("SELECT id, balance FROM ledger_accounts")}
    assert {a: b for a, b in live.items() if b} == {a: b for a, b in rebuilt.items() if b}


async def test_an_award_reserves_its_total_and_a_cancellation_gives_back_the_rest(db: Db) -> None:
    await fund(db)
    await open_award(db, "w1")
    assert await db.balance(AVAILABLE) == Decimal("750000.00")
    assert await db.balance(award_account("w1", AccountKind.RESERVED)) == Decimal("250000.00")
    async with db.uow() as uow:
        await commands.cancel_award(
            uow,
            CancelAward(
                award_id="w1",
                application_id="app-w1",
                reason_code="application_withdrawn",
                reason="The firm withdrew.",
            ),
            WORKFLOW,
            utcnow(),
        )
        await uow.commit()
    assert await db.balance(AVAILABLE) == Decimal("1000000.00")
    assert await db.event_types() == ["award.opened", "award.cancelled"]
    await _books_balance(db)


async def test_a_budget_that_cannot_cover_an_award_says_so_and_reserves_nothing(db: Db) -> None:
    await fund(db, "100000.00")
    await open_award(db, "w1")
    assert await db.event_types() == ["budget.exhausted"]
    assert await db.balance(AVAILABLE) == Decimal("100000.00")
    assert await db.rows("SELECT id FROM awards") == []
    assert await db.rows("SELECT award_id FROM budget_waitlist") == [("w1",)]


async def test_opening_twice_reserves_once(db: Db) -> None:
    await fund(db)
    await open_award(db, "w1")
    await open_award(db, "w1")
    assert await db.balance(AVAILABLE) == Decimal("750000.00")


async def test_one_payment_per_tranche_with_its_id_stored_before_any_rail_call(db: Db) -> None:
    await fund(db)
    await open_award(db, "w1")
    first = await release(db, "w1", 1)
    again = await release(db, "w1", 1)
    assert first is not None
    assert again is None
    rows = await db.rows("SELECT id, state FROM payments WHERE award_id = 'w1'")
    assert rows == [(first, "pending")]
    async with db.engine.begin() as conn:
        with pytest.raises(IntegrityError):
            await conn.execute(
                sa.text(
                    "INSERT INTO payments (id, award_id, sequence, amount, currency, beneficiary,"
                    " state, attempts, next_attempt_at, created_at, updated_at) VALUES ('p2', 'w1',"
                    " 1, 1, 'EUR', 'ACME', 'pending', 0, '2027-01-01', '2027-01-01', '2027-01-01')"
                )
            )


async def test_releasing_on_a_cancelled_award_is_refused(db: Db) -> None:
    await fund(db)
    await open_award(db, "w1")
    async with db.uow() as uow:
        await commands.cancel_award(
            uow,
            CancelAward(
                award_id="w1",
                application_id="app-w1",
                reason_code="administrative",
                reason="Cancelled.",
            ),
            WORKFLOW,
            utcnow(),
        )
        await uow.commit()
    with pytest.raises(BusinessRefusal, match="cancelled"):
        await release(db, "w1", 2)


async def test_budget_set_twice_and_amounts_finer_than_cents_are_refused(db: Db) -> None:
    await fund(db)
    with pytest.raises(Conflict):
        await fund(db)
    # Money finer than its currency's minor unit cannot even be built (the contracts' rule).
    with pytest.raises(ValidationError, match="money_precision"):
        Money.of("1.005", "EUR")


async def test_the_database_refuses_a_negative_balance_and_an_unbalanced_transfer(db: Db) -> None:
    await fund(db)
    async with db.engine.begin() as conn:
        with pytest.raises(IntegrityError):
            await conn.execute(
                sa.text("UPDATE ledger_accounts SET balance = -1 WHERE id = :a"), {"a": AVAILABLE}
            )
    async with db.engine.begin() as conn:
        with pytest.raises(IntegrityError):
            await conn.execute(sa.text("UPDATE ledger_transfers SET amount = 0"))


@pytest.mark.integration
async def test_competing_awards_on_postgres_never_overdraw_the_budget(pg_url: str) -> None:
    async with fresh_database(pg_url, "ledger_race") as url, disbursement_db(url) as db:
        await fund(db, "1000000.00")
        second = create_engine(url, pool_size=5)
        factories = [db.uow, UnitOfWorkFactory(create_session_factory(second))]

        async def open_one(n: int) -> None:
            for _ in range(20):
                try:
                    async with factories[n % 2]() as uow:
                        command = award_command(f"race-{n}", "30000.00")
                        await commands.open_award(uow, command, WORKFLOW, utcnow())
                        await uow.commit()
                    return
                except (
                    Exception
                ):  # a deadlock or serialisation failure: retried, as a consumer would
                    await asyncio.sleep(0)
            raise AssertionError(f"award {n} never applied")

        try:
            await asyncio.gather(*(open_one(n) for n in range(120)))
        finally:
            await second.dispose()
        opened = await db.scalar("SELECT count(*) FROM awards")
        assert opened == 33  # 33 x 30,000 fits in 1,000,000; the 34th does not
        assert await db.balance(AVAILABLE) == Decimal("10000.00")
        assert (await db.event_types()).count("budget.exhausted") == 120 - 33
        await _books_balance(db)


async def test_an_award_on_a_budget_that_does_not_exist_is_unfunded(db: Db) -> None:
    await open_award(db, "w1")
    assert await db.event_types() == ["budget.exhausted"]
    assert await db.rows("SELECT id FROM awards") == []


async def _charge(db: Db, award_id: str, budget_id: str) -> None:
    async with db.uow() as uow:
        await commands.charge_award(
            uow,
            ChargeAward(
                award_id=award_id,
                application_id=f"app-{award_id}",
                budget_id=budget_id,
                accepted_at=utcnow(),
            ),
            WORKFLOW,
            utcnow(),
        )
        await uow.commit()


async def test_an_award_accepted_in_the_next_fiscal_year_is_charged_to_that_years_budget(
    db: Db,
) -> None:
    await fund(db)  # grant-2027
    await fund(db, "400000.00", year=2028)
    await open_award(db, "w1")
    await _charge(db, "w1", "grant-2028")
    await _charge(db, "w1", "grant-2028")  # redelivered: moves nothing twice
    assert await db.balance(AVAILABLE) == Decimal("1000000.00")
    next_year = budget_account("grant-2028", AccountKind.AVAILABLE)
    assert await db.balance(next_year) == Decimal("150000.00")
    assert await db.balance(award_account("w1", AccountKind.RESERVED)) == Decimal("250000.00")
    assert await db.rows("SELECT budget_id FROM awards WHERE id = 'w1'") == [("grant-2028",)]
    assert await db.event_types() == ["award.opened", "award.charged"]
    await release(db, "w1", 1)  # the payment is then booked against the new budget
    await _books_balance(db)


async def test_a_next_year_budget_that_cannot_cover_the_award_moves_nothing(db: Db) -> None:
    await fund(db)
    await fund(db, "1000.00", year=2028)
    await open_award(db, "w1")
    await _charge(db, "w1", "grant-2028")
    assert await db.event_types() == ["award.opened", "budget.exhausted"]
    assert await db.balance(AVAILABLE) == Decimal("750000.00")
    assert await db.balance(budget_account("grant-2028", AccountKind.AVAILABLE)) == Decimal(
        "1000.00"
    )
    assert await db.rows("SELECT budget_id FROM awards WHERE id = 'w1'") == [("grant-2027",)]
    await _books_balance(db)


async def _top_up(db: Db, amount: str, budget_id: str = "grant-2027") -> None:
    async with db.uow() as uow:
        await commands.top_up_budget(uow, budget_id, Money.of(amount, "EUR"), WORKFLOW, utcnow())
        await uow.commit()


async def test_a_top_up_opens_the_waiting_awards_first_come_first_served(db: Db) -> None:
    await fund(db, "100000.00")
    await open_award(db, "w1")  # 250k: waits
    await open_award(db, "w2", "50000.00")  # covered at once
    await open_award(db, "w3", "100000.00")  # 50k left: waits behind w1
    await open_award(db, "w3", "100000.00")  # redelivered: one place in the line
    assert await db.rows("SELECT award_id FROM budget_waitlist ORDER BY position") == [
        ("w1",),
        ("w3",),
    ]
    await _top_up(db, "150000.00")  # 200k free: w1 (250k) still does not fit, w3 waits behind
    assert await db.rows("SELECT id FROM awards ORDER BY id") == [("w2",)]
    await _top_up(db, "100000.00")  # 300k free: w1 opens, 50k left, w3 waits
    assert await db.rows("SELECT id FROM awards ORDER BY id") == [("w1",), ("w2",)]
    assert await db.balance(AVAILABLE) == Decimal("50000.00")
    await _top_up(db, "50000.00")  # w3 opens; nothing more than the budget
    assert await db.rows("SELECT id FROM awards ORDER BY id") == [("w1",), ("w2",), ("w3",)]
    assert await db.balance(AVAILABLE) == Decimal("0.00")
    assert await db.rows("SELECT award_id FROM budget_waitlist") == []
    assert [t for t in await db.event_types() if t == "award.opened"] == ["award.opened"] * 3
    await _books_balance(db)


async def test_a_budget_set_after_the_shortfall_opens_the_award_waiting_for_it(db: Db) -> None:
    await fund(db)  # grant-2027 only
    async with db.uow() as uow:
        await commands.open_award(
            uow, award_command("w1", "250000.00", "grant-2028"), WORKFLOW, utcnow()
        )
        await uow.commit()
    await fund(db, "300000.00", year=2028)
    assert await db.rows("SELECT id, budget_id FROM awards") == [("w1", "grant-2028")]
    assert await db.event_types() == ["budget.exhausted", "award.opened"]


async def test_cancelling_a_waiting_award_takes_it_off_the_waitlist(db: Db) -> None:
    await fund(db, "100000.00")
    await open_award(db, "w1")
    async with db.uow() as uow:
        await commands.cancel_award(
            uow,
            CancelAward(
                award_id="w1",
                application_id="app-w1",
                reason_code="budget_exhausted",
                reason="No budget within the waiting period.",
            ),
            WORKFLOW,
            utcnow(),
        )
        await uow.commit()
    await _top_up(db, "500000.00")
    assert await db.rows("SELECT id FROM awards") == []
    assert await db.event_types() == ["budget.exhausted", "award.cancelled"]


def _in(year: int) -> datetime:
    return datetime(year, 1, 2, 9, 0, tzinfo=UTC)


async def _fund_at(db: Db, amount: str, year: int, now: datetime) -> None:
    async with db.uow() as uow:
        await commands.create_budget(
            uow,
            incentive_type="grant",
            fiscal_year=year,
            amount=Money.of(amount, "EUR"),
            origin=ADMIN,
            now=now,
        )
        await uow.commit()


async def _open_at(db: Db, award_id: str, total: str, budget_id: str, now: datetime) -> None:
    async with db.uow() as uow:
        await commands.open_award(uow, award_command(award_id, total, budget_id), WORKFLOW, now)
        await uow.commit()


async def test_the_new_years_budget_opens_the_awards_last_years_budget_left_waiting(
    db: Db,
) -> None:
    await _fund_at(db, "100000.00", 2027, _in(2027))
    await _open_at(db, "w1", "250000.00", "grant-2027", _in(2027))  # waits for grant-2027
    await _open_at(db, "w2", "100000.00", "grant-2026", _in(2027))  # a budget never set
    async with db.uow() as uow:
        other = award_command("w3", "50000.00", "loan-2027")  # another incentive type
        await commands.open_award(uow, other, WORKFLOW, _in(2027))
        await uow.commit()
    # Next year's budget set in advance does not take last year's line: not charged to it yet.
    await _fund_at(db, "300000.00", 2028, _in(2027).replace(month=12))
    assert await db.rows("SELECT id FROM awards") == []
    # Once 2028 has begun, its top-up opens them, in arrival order, charged to grant-2028.
    await _top_up_at(db, "50000.00", "grant-2028", _in(2028))
    assert await db.rows("SELECT id, budget_id FROM awards ORDER BY id") == [
        ("w1", "grant-2028"),
        ("w2", "grant-2028"),
    ]
    assert await db.rows("SELECT award_id FROM budget_waitlist") == [("w3",)]
    assert await db.balance(budget_account("grant-2028", AccountKind.AVAILABLE)) == Decimal("0.00")
    assert await db.balance(AVAILABLE) == Decimal("100000.00"), "last year's money untouched"
    opened = [t for t in await db.event_types() if t == "award.opened"]
    assert len(opened) == 2
    await _books_balance(db)


async def test_a_budget_set_in_advance_opens_last_years_waiting_awards_when_its_year_begins(
    db: Db,
) -> None:
    await _open_at(db, "w1", "250000.00", "grant-2027", _in(2027))
    await _open_at(db, "w2", "500000.00", "grant-2027", _in(2027))
    await _fund_at(db, "600000.00", 2028, _in(2027).replace(month=11))
    async with db.uow() as uow:  # still 2027: nothing may be charged to 2028 yet
        assert await commands.open_waiting_for_new_year(uow, _in(2027).replace(month=12)) == 0
        await uow.commit()
    async with db.uow() as uow:
        assert await commands.open_waiting_for_new_year(uow, _in(2028)) == 1
        await uow.commit()
    async with db.uow() as uow:  # the sweep again: w2 still does not fit, nothing moves
        assert await commands.open_waiting_for_new_year(uow, _in(2028)) == 0
        await uow.commit()
    assert await db.rows("SELECT id, budget_id FROM awards") == [("w1", "grant-2028")]
    assert await db.rows("SELECT award_id FROM budget_waitlist") == [("w2",)]
    await _books_balance(db)


async def _top_up_at(db: Db, amount: str, budget_id: str, now: datetime) -> None:
    async with db.uow() as uow:
        await commands.top_up_budget(uow, budget_id, Money.of(amount, "EUR"), WORKFLOW, now)
        await uow.commit()
