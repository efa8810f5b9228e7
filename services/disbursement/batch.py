"""What one consumer batch of ``disbursement.commands`` reads, read once for the whole batch.

The consumer applies a batch in one transaction (see the kit's consumer). :func:`preload` reads,
with one statement per table, the awards (locked until the commit), their waitlist entries,
the tranches to release and the budgets the batch names, and keeps them in ``uow.memo``. The
commands then read through the lookups below: from the memo when the batch loaded the row,
from the database otherwise (the payout worker, reconciliation and the admin API run without
a memo). Each command writes as before, at once and through the ledger's conditional UPDATEs,
so the database constraints stay the enforcement, and it tells the memo what it changed
(:func:`remember_award` and friends) or, where it changes more than the memo keeps, drops the
award from it (:func:`forget`) so later messages of the batch read it afresh.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from services.disbursement import store
from services.disbursement.models import AWARDS, BUDGET_WAITLIST, BUDGETS, TRANCHES
from services.kit.uow import UnitOfWork

#: ``uow.memo`` key of the batch's rows.
MEMO = "disbursement.batch"


@dataclass
class BatchRows:
    """Rows of one batch, by key. ``known`` are the awards whose rows (or their absence) the
    memo states; any other award is read from the database."""

    known: set[str] = field(default_factory=set)
    awards: dict[str, Any] = field(default_factory=dict)
    waiting: dict[str, Any] = field(default_factory=dict)
    tranches: dict[tuple[str, int], Any] = field(default_factory=dict)
    #: Budgets found; a budget the batch did not find is read again (it may be set meanwhile).
    budgets: dict[str, Any] = field(default_factory=dict)


async def preload(
    uow: UnitOfWork, award_ids: Iterable[str], releases: Iterable[str], budget_ids: Iterable[str]
) -> None:
    """Read the batch's awards (locked), waitlist entries, tranches of ``releases`` and budgets."""
    rows = BatchRows(known=set(award_ids))
    for award in await uow.load_many(AWARDS, "id", rows.known, lock=True):
        rows.awards[award.id] = award
    for entry in await uow.load_many(BUDGET_WAITLIST, "award_id", rows.known):
        rows.waiting[entry.award_id] = entry
    for tranche in await uow.load_many(TRANCHES, "award_id", set(releases)):
        rows.tranches[(tranche.award_id, tranche.sequence)] = tranche
    for budget in await uow.load_many(BUDGETS, "id", set(budget_ids)):
        rows.budgets[budget.id] = budget
    uow.memo[MEMO] = rows


def _rows(uow: UnitOfWork) -> BatchRows | None:
    found: BatchRows | None = uow.memo.get(MEMO)
    return found


async def award(uow: UnitOfWork, award_id: str, *, lock: bool = False) -> Any:
    """The award row, or None."""
    rows = _rows(uow)
    if rows is not None and award_id in rows.known:
        return rows.awards.get(award_id)  # locked by the batch's preload
    return await store.award(uow.session, award_id, lock=lock)


async def waiting(uow: UnitOfWork, award_id: str) -> Any:
    """The award's budget waitlist entry, or None."""
    rows = _rows(uow)
    if rows is not None and award_id in rows.known:
        return rows.waiting.get(award_id)
    return await store.waiting(uow.session, award_id)


async def budget(uow: UnitOfWork, budget_id: str) -> Any:
    """The budget row, or None."""
    rows = _rows(uow)
    if rows is not None and budget_id in rows.budgets:
        return rows.budgets[budget_id]
    return await store.budget(uow.session, budget_id)


async def tranche(uow: UnitOfWork, award_id: str, sequence: int) -> Any:
    """The tranche row, or None."""
    rows = _rows(uow)
    if rows is not None and award_id in rows.known and (award_id, sequence) in rows.tranches:
        return rows.tranches[(award_id, sequence)]
    t = TRANCHES.c
    return await store.one(uow.session, TRANCHES, t.award_id == award_id, t.sequence == sequence)


def remember_award(uow: UnitOfWork, values: dict[str, Any], tranches: list[dict[str, Any]]) -> None:
    """An award this transaction stored, with its tranches."""
    rows = _rows(uow)
    if rows is None:
        return
    award_id = values["id"]
    rows.known.add(award_id)
    rows.awards[award_id] = SimpleNamespace(**values)
    rows.waiting.pop(award_id, None)
    for row in tranches:
        rows.tranches[(award_id, row["sequence"])] = SimpleNamespace(**row)


def remember_waiting(uow: UnitOfWork, values: dict[str, Any]) -> None:
    """A waitlist entry this transaction stored."""
    rows = _rows(uow)
    if rows is not None:
        rows.known.add(values["award_id"])
        rows.waiting[values["award_id"]] = SimpleNamespace(**values)


def remember_tranche(uow: UnitOfWork, award_id: str, sequence: int, **changes: Any) -> None:
    """A tranche this transaction changed."""
    rows = _rows(uow)
    if rows is None:
        return
    found = rows.tranches.get((award_id, sequence))
    if found is not None:
        rows.tranches[(award_id, sequence)] = SimpleNamespace(**{**_as_dict(found), **changes})


def forget(uow: UnitOfWork, award_id: str) -> None:
    """Later messages of the batch read this award's rows from the database again."""
    rows = _rows(uow)
    if rows is not None:
        rows.known.discard(award_id)


def _as_dict(row: Any) -> dict[str, Any]:
    mapping = getattr(row, "_mapping", None)
    return dict(mapping) if mapping is not None else dict(vars(row))
