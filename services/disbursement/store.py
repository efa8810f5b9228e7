"""Statements of the disbursement service: every read and write of its tables goes through here.

Nothing here commits: callers own the unit of work. Balances change only through
:func:`apply`: the debited account by one UPDATE conditional on the result staying at or above
zero (or on the account being a funding source), the credited one by one UPDATE, and the
transfer row written beside them, all in the caller's transaction. The CHECK on
``ledger_accounts`` backs the condition up.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel.ext.asyncio.session import AsyncSession

from services.disbursement.domain import Overdrawn, Transfer, kind_of, of_an_earlier_year
from services.disbursement.models import (
    ACCOUNTS,
    AWARDS,
    BUDGET_WAITLIST,
    BUDGETS,
    PAYMENTS,
    TRANCHES,
    TRANSFERS,
)
from services.kit.db import insert_ignore


async def _conn(session: AsyncSession) -> AsyncConnection:
    return await session.connection()


def _locking(statement: sa.Select[Any], session: AsyncSession) -> sa.Select[Any]:
    if session.get_bind().dialect.name == "postgresql":
        return statement.with_for_update()
    return statement


async def one(session: AsyncSession, table: sa.Table, *where: Any, lock: bool = False) -> Any:
    """The row of ``table`` matching ``where``, or None."""
    statement = sa.select(table).where(*where)
    if lock:
        statement = _locking(statement, session)
    return (await (await _conn(session)).execute(statement)).first()


async def rows(session: AsyncSession, statement: sa.Select[Any]) -> list[Any]:
    return list((await (await _conn(session)).execute(statement)).all())


async def insert(session: AsyncSession, table: sa.Table, values: dict[str, Any]) -> None:
    await (await _conn(session)).execute(table.insert(), values)


async def insert_many(session: AsyncSession, table: sa.Table, values: list[dict[str, Any]]) -> None:
    """One INSERT of every row in ``values`` (an executemany)."""
    if values:
        await (await _conn(session)).execute(table.insert(), values)


async def update(session: AsyncSession, table: sa.Table, *where: Any, **values: Any) -> int:
    """UPDATE ... WHERE ``where``; returns the number of rows changed."""
    result = await (await _conn(session)).execute(table.update().where(*where).values(**values))
    return int(result.rowcount)


# --- the ledger ----------------------------------------------------------------------------------


# Built once, with bound parameters: every payout moves money three times, and building these
# expressions for each move cost more CPU than executing them.
_ENSURE_ACCOUNT = {d: insert_ignore(d, ACCOUNTS) for d in ("postgresql", "sqlite")}
_DEBIT = (
    ACCOUNTS.update()
    .where(
        ACCOUNTS.c.id == sa.bindparam("account"),
        ACCOUNTS.c.currency == sa.bindparam("in_currency"),
        sa.or_(ACCOUNTS.c.balance >= sa.bindparam("amount"), ACCOUNTS.c.kind == "funding"),
    )
    .values(balance=ACCOUNTS.c.balance - sa.bindparam("amount"))
)
_CREDIT = (
    ACCOUNTS.update()
    .where(ACCOUNTS.c.id == sa.bindparam("account"))
    .values(balance=ACCOUNTS.c.balance + sa.bindparam("amount"))
)


def _account(account: str, currency: str) -> dict[str, Any]:
    return {"id": account, "kind": kind_of(account).value, "currency": currency, "balance": 0}


async def apply(
    session: AsyncSession,
    transfer: Transfer,
    *,
    currency: str,
    budget_id: str,
    actor: str,
    note: str,
    now: datetime,
    award_id: str | None = None,
    sequence: int | None = None,
) -> int:
    """Move money and return the ledger entry's id; :class:`Overdrawn` (nothing written) when
    the debit would go below zero."""
    conn = await _conn(session)
    await conn.execute(  # both accounts, in one executemany
        _ENSURE_ACCOUNT[conn.dialect.name],
        [_account(transfer.debit, currency), _account(transfer.credit, currency)],
    )
    debited = await conn.execute(
        _DEBIT, {"account": transfer.debit, "in_currency": currency, "amount": transfer.amount}
    )
    if debited.rowcount != 1:
        raise Overdrawn(f"{transfer.debit} holds less than {transfer.amount} {currency}")
    await conn.execute(_CREDIT, {"account": transfer.credit, "amount": transfer.amount})
    written = await conn.execute(
        TRANSFERS.insert(),
        {
            "cause": transfer.cause.value,
            "debit": transfer.debit,
            "credit": transfer.credit,
            "amount": transfer.amount,
            "currency": currency,
            "budget_id": budget_id,
            "award_id": award_id,
            "sequence": sequence,
            "actor": actor,
            "note": note,
            "created_at": now,
        },
    )
    key = written.inserted_primary_key
    if key is None:  # pragma: no cover - every supported database returns it
        raise RuntimeError("the ledger entry's id was not returned")
    return int(key[0])


async def balances(session: AsyncSession, accounts: Sequence[str]) -> dict[str, Decimal]:
    """Balances of ``accounts`` (zero for accounts that never moved)."""
    found = await rows(
        session, sa.select(ACCOUNTS.c.id, ACCOUNTS.c.balance).where(ACCOUNTS.c.id.in_(accounts))
    )
    out = dict.fromkeys(accounts, Decimal(0))
    out.update({r[0]: Decimal(r[1]) for r in found})
    return out


async def transfers(
    session: AsyncSession, *, budget_id: str | None = None, award_id: str | None = None
) -> list[Any]:
    statement = sa.select(TRANSFERS).order_by(TRANSFERS.c.id)
    if budget_id is not None:
        statement = statement.where(TRANSFERS.c.budget_id == budget_id)
    if award_id is not None:
        statement = statement.where(TRANSFERS.c.award_id == award_id)
    return await rows(session, statement)


# --- budgets, awards, tranches, payments ---------------------------------------------------------


async def budget(session: AsyncSession, budget_id: str) -> Any:
    return await one(session, BUDGETS, BUDGETS.c.id == budget_id)


async def budgets_of_year(session: AsyncSession, fiscal_year: int) -> list[Any]:
    return await rows(
        session,
        sa.select(BUDGETS).where(BUDGETS.c.fiscal_year == fiscal_year).order_by(BUDGETS.c.id),
    )


async def all_budgets(session: AsyncSession) -> list[Any]:
    return await rows(session, sa.select(BUDGETS).order_by(BUDGETS.c.id))


async def award(session: AsyncSession, award_id: str, *, lock: bool = False) -> Any:
    return await one(session, AWARDS, AWARDS.c.id == award_id, lock=lock)


async def awards_of_budget(session: AsyncSession, budget_id: str) -> list[Any]:
    return await rows(
        session, sa.select(AWARDS).where(AWARDS.c.budget_id == budget_id).order_by(AWARDS.c.id)
    )


async def tranches_of(session: AsyncSession, award_id: str) -> list[Any]:
    return await rows(
        session,
        sa.select(TRANCHES).where(TRANCHES.c.award_id == award_id).order_by(TRANCHES.c.sequence),
    )


async def payment(session: AsyncSession, payment_id: str, *, lock: bool = False) -> Any:
    return await one(session, PAYMENTS, PAYMENTS.c.id == payment_id, lock=lock)


async def payment_of(session: AsyncSession, award_id: str, sequence: int) -> Any:
    return await one(
        session, PAYMENTS, PAYMENTS.c.award_id == award_id, PAYMENTS.c.sequence == sequence
    )


async def payments_of(session: AsyncSession, award_id: str) -> list[Any]:
    return await rows(
        session,
        sa.select(PAYMENTS).where(PAYMENTS.c.award_id == award_id).order_by(PAYMENTS.c.sequence),
    )


async def bring_forward(session: AsyncSession, states: Sequence[str], now: datetime) -> None:
    """Make every payment in ``states`` due at ``now`` (the rail answers again)."""
    p = PAYMENTS.c
    await (await _conn(session)).execute(
        sa.update(PAYMENTS)
        .where(p.state.in_(states), p.next_attempt_at > now)
        .values(next_attempt_at=now)
    )


async def payments_in(
    session: AsyncSession, states: Sequence[str], *, due_by: datetime | None, limit: int
) -> list[Any]:
    """Payments in ``states`` (due by ``due_by`` when given), oldest first."""
    p = PAYMENTS.c
    statement = sa.select(PAYMENTS).where(p.state.in_(states))
    if due_by is not None:
        statement = statement.where(p.next_attempt_at <= due_by)
    return await rows(session, statement.order_by(p.next_attempt_at, p.id).limit(limit))


# --- the budget waitlist -------------------------------------------------------------------------


async def waiting(session: AsyncSession, award_id: str) -> Any:
    """The waitlist entry of ``award_id``, or None."""
    return await one(session, BUDGET_WAITLIST, BUDGET_WAITLIST.c.award_id == award_id)


async def waitlist(session: AsyncSession, budget_id: str, *, lock: bool = False) -> list[Any]:
    """The awards waiting for ``budget_id``, first come first."""
    w = BUDGET_WAITLIST.c
    statement = sa.select(BUDGET_WAITLIST).where(w.budget_id == budget_id).order_by(w.position)
    if lock:
        statement = _locking(statement, session)
    return await rows(session, statement)


async def waitlist_like(
    session: AsyncSession, incentive_type: str, *, lock: bool = False
) -> list[Any]:
    """The awards waiting for any budget whose id may be one of ``incentive_type``'s, first come
    first (callers keep those :func:`~contracts.v1.disbursement.budget_key` says are)."""
    w = BUDGET_WAITLIST.c
    statement = (
        sa.select(BUDGET_WAITLIST)
        .where(w.budget_id.startswith(f"{incentive_type}-", autoescape=True))
        .order_by(w.position)
    )
    if lock:
        statement = _locking(statement, session)
    return await rows(session, statement)


async def waits_before(session: AsyncSession, incentive_type: str, fiscal_year: int) -> bool:
    """Whether an award waits for a budget of ``incentive_type`` before ``fiscal_year``."""
    for entry in await waitlist_like(session, incentive_type):
        if of_an_earlier_year(entry.budget_id, incentive_type, fiscal_year):
            return True
    return False


async def delete_waiting(session: AsyncSession, award_id: str) -> None:
    await (await _conn(session)).execute(
        BUDGET_WAITLIST.delete().where(BUDGET_WAITLIST.c.award_id == award_id)
    )
