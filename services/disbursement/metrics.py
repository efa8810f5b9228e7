"""The disbursement service's metrics: budget money by ledger state, payouts by outcome."""

from __future__ import annotations

import sqlalchemy as sa
from prometheus_client import Gauge

from services.disbursement.models import LedgerAccount, Payment
from services.kit.runtime import Service

#: The ledger account kinds shown: what budgets still have, what awards hold, what was paid.
SHOWN_KINDS = ("available", "reserved", "paid")


def register_metrics(service: Service) -> None:
    """Declare ``incentives_budget_amount{kind,currency}`` and ``incentives_payouts{outcome}``."""
    amounts = Gauge(
        "incentives_budget_amount",
        "Money in the ledger by account kind (available in budgets, reserved for awards, paid).",
        ["kind", "currency"],
        registry=service.metrics.registry,
    )
    payouts = Gauge(
        "incentives_payouts",
        "Payouts by outcome (pending, unknown, paid, rejected, cancelled).",
        ["outcome"],
        registry=service.metrics.registry,
    )
    accounts = LedgerAccount.__table__  # type: ignore[attr-defined]
    payments = Payment.__table__  # type: ignore[attr-defined]
    balances = (
        sa.select(accounts.c.kind, accounts.c.currency, sa.func.sum(accounts.c.balance))
        .where(accounts.c.kind.in_(SHOWN_KINDS))
        .group_by(accounts.c.kind, accounts.c.currency)
    )
    outcomes = sa.select(payments.c.state, sa.func.count()).group_by(payments.c.state)

    async def scrape() -> None:
        async with service.engine.connect() as conn:
            money = (await conn.execute(balances)).all()
            counted = (await conn.execute(outcomes)).all()
        for kind, currency, total in money:
            amounts.labels(kind, currency).set(float(total or 0))
        for state, count in counted:
            payouts.labels(state).set(count)

    service.metrics.on_scrape(scrape, name="disbursement")
