"""How the desk reads its projection and changes its registry: queries, no HTTP.

Reads run in a unit of work that is left without a commit; what they load is detached first,
so it stays usable after it. Registry changes commit their unit of work once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from contracts.conflicts import conflicts, named
from contracts.envelope import utcnow
from contracts.v1.desk import ReviewerProfile, ReviewerRole
from services.kit.auth import Principal
from services.kit.errors import Conflict, NotFound
from services.kit.uow import UnitOfWorkFactory
from services.review.models import ReviewerChange, ReviewerRecord, ReviewTask, identifiers_json
from services.review.views import can_see, reviewer_profile


@asynccontextmanager
async def reading(uow_factory: UnitOfWorkFactory) -> AsyncIterator[AsyncSession]:
    """A session for reads only; what it loaded stays usable after it.

    The unit of work rolls back an uncommitted session on exit, which would expire every
    loaded row; detaching them first keeps their values for the response.
    """
    async with uow_factory() as uow:
        try:
            yield uow.session
        finally:
            uow.session.expunge_all()


# --- tasks ---------------------------------------------------------------------------------------


async def task_page(
    uow_factory: UnitOfWorkFactory, conditions: Sequence[Any], limit: int, offset: int
) -> tuple[list[ReviewTask], int]:
    """Assigned tasks matching ``conditions``, soonest due first, and how many match in all."""
    where = [col(ReviewTask.assigned_at).is_not(None), *conditions]
    async with reading(uow_factory) as session:
        total = (
            await session.exec(select(sa.func.count()).select_from(ReviewTask).where(*where))
        ).one()
        rows = (
            await session.exec(
                select(ReviewTask)
                .where(*where)
                .order_by(col(ReviewTask.due_at), col(ReviewTask.task_id))
                .offset(offset)
                .limit(limit)
            )
        ).all()
    return list(rows), int(total)


async def visible_task(
    uow_factory: UnitOfWorkFactory, principal: Principal, task_id: str
) -> ReviewTask:
    """The task if ``principal`` may see it; :class:`NotFound` otherwise."""
    async with reading(uow_factory) as session:
        task = await session.get(ReviewTask, task_id)
    if task is None or task.assigned_at is None or not can_see(task, principal):
        # The same answer for "no such task" and "not yours": ids do not leak.
        raise NotFound(f"task {task_id} not found")
    return task


# --- the registry --------------------------------------------------------------------------------


async def reviewer(uow_factory: UnitOfWorkFactory, reviewer_id: str) -> ReviewerRecord | None:
    """The registry row of ``reviewer_id``, if any."""
    async with reading(uow_factory) as session:
        return await session.get(ReviewerRecord, reviewer_id)


async def reviewers(uow_factory: UnitOfWorkFactory) -> list[ReviewerRecord]:
    """Every registry row, sorted by reviewer id."""
    async with reading(uow_factory) as session:
        rows = (
            await session.exec(select(ReviewerRecord).order_by(col(ReviewerRecord.reviewer_id)))
        ).all()
    return list(rows)


async def add_reviewer(
    uow_factory: UnitOfWorkFactory, profile: ReviewerProfile, *, by: str
) -> ReviewerRecord:
    """Add ``profile`` to the registry; :class:`Conflict` if the id is taken."""
    now = utcnow()
    async with uow_factory() as uow:
        if await uow.session.get(ReviewerRecord, profile.reviewer_id) is not None:
            raise Conflict(f"reviewer {profile.reviewer_id} already exists; use PUT to change it")
        record = _record_from(profile, created_at=now, updated_by=by)
        uow.session.add(record)
        uow.session.add(registry_change(record, "added"))
        await uow.commit()
    return record


async def replace_reviewer(
    uow_factory: UnitOfWorkFactory, profile: ReviewerProfile, *, by: str
) -> ReviewerRecord:
    """Replace a registry entry with ``profile``; :class:`NotFound` if there is none."""
    async with uow_factory() as uow:
        record = await uow.session.get(ReviewerRecord, profile.reviewer_id)
        if record is None:
            raise NotFound(f"reviewer {profile.reviewer_id} not found")
        record.name = profile.name
        record.roles = [r.value for r in profile.roles]
        record.affiliations = list(profile.affiliations)
        record.ownership_interests = list(profile.ownership_interests)
        record.declared_identifiers = identifiers_json(profile)
        record.active = profile.active
        record.updated_at = utcnow()
        record.updated_by = by
        uow.session.add(record)
        uow.session.add(registry_change(record, "replaced"))
        await uow.commit()
    return record


async def delete_reviewer(uow_factory: UnitOfWorkFactory, reviewer_id: str, *, by: str) -> None:
    """Remove a registry entry; :class:`NotFound` if there is none."""
    async with uow_factory() as uow:
        record = await uow.session.get(ReviewerRecord, reviewer_id)
        if record is None:
            raise NotFound(f"reviewer {reviewer_id} not found")
        await uow.session.delete(record)
        uow.session.add(
            ReviewerChange(
                reviewer_id=reviewer_id,
                change="removed",
                changed_at=utcnow(),
                changed_by=by,
                profile=None,
            )
        )
        await uow.commit()


def registry_change(record: ReviewerRecord, change: str) -> ReviewerChange:
    """The history row of ``record`` as it stands after ``change`` (added, replaced)."""
    return ReviewerChange(
        reviewer_id=record.reviewer_id,
        change=change,
        changed_at=record.updated_at,
        changed_by=record.updated_by,
        profile=reviewer_profile(record).model_dump(mode="json"),
    )


async def reviewer_history(
    uow_factory: UnitOfWorkFactory, reviewer_id: str
) -> list[ReviewerChange]:
    """Every change of ``reviewer_id``'s entry, oldest first."""
    async with reading(uow_factory) as session:
        rows = (
            await session.exec(
                select(ReviewerChange)
                .where(col(ReviewerChange.reviewer_id) == reviewer_id)
                .order_by(col(ReviewerChange.change_id))
            )
        ).all()
    return list(rows)


async def candidates(
    uow_factory: UnitOfWorkFactory, role: ReviewerRole, organisations: Sequence[str]
) -> list[ReviewerProfile]:
    """Active reviewers holding ``role``, without those conflicted with ``organisations``."""
    async with reading(uow_factory) as session:
        rows = (
            await session.exec(
                select(ReviewerRecord)
                .where(col(ReviewerRecord.active).is_(True))
                .order_by(col(ReviewerRecord.reviewer_id))
            )
        ).all()
    profiles = [reviewer_profile(r) for r in rows if role.value in r.roles]
    if organisations:
        # Names only: the workflow also checks identifiers on the profiles it gets back.
        targets = named(organisations)
        profiles = [p for p in profiles if not conflicts(p, targets)]
    return profiles


def _record_from(
    profile: ReviewerProfile, *, created_at: datetime, updated_by: str
) -> ReviewerRecord:
    return ReviewerRecord(
        reviewer_id=profile.reviewer_id,
        name=profile.name,
        roles=[r.value for r in profile.roles],
        affiliations=list(profile.affiliations),
        ownership_interests=list(profile.ownership_interests),
        declared_identifiers=identifiers_json(profile),
        active=profile.active,
        created_at=created_at,
        updated_at=created_at,
        updated_by=updated_by,
    )
