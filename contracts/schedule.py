"""Tranche schedules: how an award's total is split into tranches.

A schedule is a list of shares (``"signing:40,milestone 1:30,milestone 2:30"``). Each amount is
rounded down to the currency's minor unit and the remainder goes to the last tranche, so the
tranches always add up to the total. Whoever proposes an award (the approval workflow) and
whoever checks it use this one rule.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal

from contracts.iso import minor_units

HUNDRED = Decimal(100)


class ScheduleError(ValueError):
    """A tranche schedule that does not describe a whole award."""


@dataclass(frozen=True)
class Share:
    """One tranche of a schedule: its name (what releases it) and its percentage."""

    name: str
    percent: Decimal


def parse_schedule(text: str) -> tuple[Share, ...]:
    """Shares from ``"signing:40,milestone 1:30,milestone 2:30"``; they must add up to 100."""
    shares: list[Share] = []
    for part in text.split(","):
        name, sep, value = part.rpartition(":")
        try:
            percent = Decimal(value.strip())
        except ArithmeticError as exc:
            raise ScheduleError(f"{part.strip()!r}: the share is not a number") from exc
        if not sep or not name.strip():
            raise ScheduleError(f"{part.strip()!r}: write it as name:percent")
        if not percent.is_finite() or percent <= 0:
            raise ScheduleError(f"{part.strip()!r}: a share is a positive percentage")
        shares.append(Share(name.strip(), percent))
    if sum((s.percent for s in shares), Decimal(0)) != HUNDRED:
        raise ScheduleError("the shares of a schedule add up to 100")
    return tuple(shares)


def quantum(currency: str) -> Decimal:
    """The currency's minor unit as a Decimal exponent: 0.01 for EUR, 1 for JPY."""
    digits = minor_units(currency)
    if digits is None:  # metals and units of account: never money (the contracts refuse them)
        raise ValueError(f"{currency} has no minor unit")
    return Decimal(1).scaleb(-digits)


def in_minor_units(amount: Decimal, currency: str) -> bool:
    """Whether ``amount`` is a whole number of the currency's minor units."""
    return amount == amount.quantize(quantum(currency), rounding=ROUND_DOWN)


def split(total: Decimal, currency: str, shares: Sequence[Share]) -> list[Decimal]:
    """The tranche amounts of ``total``: rounded down to the minor unit, remainder last."""
    if total <= 0 or not in_minor_units(total, currency):
        raise ScheduleError(f"{total} {currency} is not a positive amount in minor units")
    step = quantum(currency)
    amounts = [(total * s.percent / HUNDRED).quantize(step, rounding=ROUND_DOWN) for s in shares]
    amounts[-1] = total - sum(amounts[:-1], Decimal(0))
    return amounts
