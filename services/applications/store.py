"""Queries of the applications service: every read goes through here, scoped to the caller.

Nothing here commits: callers own the unit of work. A firm's queries always filter on its
firm id, so another firm's application is simply not found (404, never 403: ids do not leak).
Program staff never see drafts: a draft is the firm's private work until it is submitted.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from contracts.status import Status
from services.applications.models import ApplicationRecord, IdempotencyKey, TimelineEntry
from services.kit.auth import Principal, Role
from services.kit.db import UTCDateTime
from services.kit.errors import NotFound


def not_found(application_id: str) -> NotFound:
    """The one answer for missing and foreign applications alike."""
    return NotFound(f"application {application_id} not found")


async def get_application(
    session: AsyncSession, application_id: str, principal: Principal, *, lock: bool = False
) -> ApplicationRecord:
    """The application, if ``principal`` may see it; :class:`NotFound` otherwise.

    ``lock`` takes a row lock (``SELECT ... FOR UPDATE`` on PostgreSQL) so concurrent requests
    and the status projection change one application one at a time.
    """
    statement = select(ApplicationRecord).where(ApplicationRecord.id == application_id)
    if principal.role is Role.FIRM:
        statement = statement.where(ApplicationRecord.firm_id == principal.firm_id)
    else:
        statement = statement.where(ApplicationRecord.status != Status.DRAFT.value)
    if lock:
        statement = statement.with_for_update()
    record = (await session.exec(statement)).first()
    if record is None:
        raise not_found(application_id)
    return record


async def lock_for_projection(
    session: AsyncSession, application_id: str
) -> ApplicationRecord | None:
    """The application to project an event onto, row-locked; None when it is not ours."""
    statement = (
        select(ApplicationRecord).where(ApplicationRecord.id == application_id).with_for_update()
    )
    return (await session.exec(statement)).first()


async def timeline(session: AsyncSession, application_id: str) -> list[TimelineEntry]:
    """The application's timeline, oldest first."""
    statement = (
        select(TimelineEntry)
        .where(TimelineEntry.application_id == application_id)
        .order_by(col(TimelineEntry.occurred_at), col(TimelineEntry.id))
    )
    return list((await session.exec(statement)).all())


async def timeline_has(session: AsyncSession, event_id: uuid.UUID) -> bool:
    """Whether the event is already on a timeline."""
    statement = select(TimelineEntry.id).where(TimelineEntry.event_id == event_id)
    return (await session.exec(statement)).first() is not None


async def idempotency_key(session: AsyncSession, firm_id: str, key: str) -> IdempotencyKey | None:
    """The stored use of ``key`` by ``firm_id``, if any."""
    return await session.get(IdempotencyKey, (firm_id, key))


# --- listing -------------------------------------------------------------------------------------


class InvalidCursor(ValueError):
    """A ``cursor`` that this service did not issue."""


@dataclass(frozen=True)
class Cursor:
    """Where a page ends: the last item's creation time and id (keyset pagination)."""

    created_at: datetime
    id: str

    def encode(self) -> str:
        """The opaque form handed to clients."""
        raw = f"{self.created_at.isoformat()}|{self.id}".encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, value: str) -> Cursor:
        """Parse a cursor from :meth:`encode`; :class:`InvalidCursor` otherwise."""
        try:
            raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode()
            stamp, _, application_id = raw.partition("|")
            created_at = datetime.fromisoformat(stamp)
        except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
            raise InvalidCursor("not a cursor issued by this service") from exc
        if not application_id or created_at.tzinfo is None:
            raise InvalidCursor("not a cursor issued by this service")
        return cls(created_at, application_id)


async def list_applications(
    session: AsyncSession,
    principal: Principal,
    *,
    limit: int,
    cursor: Cursor | None = None,
    status: Status | None = None,
    firm_id: str | None = None,
) -> tuple[list[ApplicationRecord], Cursor | None]:
    """One page of the applications ``principal`` may see, newest first, and the next cursor."""
    statement = select(ApplicationRecord)
    if principal.role is Role.FIRM:
        statement = statement.where(ApplicationRecord.firm_id == principal.firm_id)
    else:
        statement = statement.where(ApplicationRecord.status != Status.DRAFT.value)
        if firm_id is not None:
            statement = statement.where(ApplicationRecord.firm_id == firm_id)
    if status is not None:
        statement = statement.where(ApplicationRecord.status == status.value)
    if cursor is not None:
        statement = statement.where(
            sa.tuple_(col(ApplicationRecord.created_at), col(ApplicationRecord.id))
            < sa.tuple_(sa.literal(cursor.created_at, UTCDateTime()), sa.literal(cursor.id))
        )
    statement = statement.order_by(
        col(ApplicationRecord.created_at).desc(), col(ApplicationRecord.id).desc()
    ).limit(limit + 1)
    records = list((await session.exec(statement)).all())
    if len(records) <= limit:
        return records, None
    records = records[:limit]
    last = records[-1]
    return records, Cursor(last.created_at, last.id)
