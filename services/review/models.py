"""Tables of the review service database.

- ``reviewers``: the reviewer registry (roles, affiliations, ownership interests, declared
  register entries and LEIs, active flag),
  managed by admins through the desk;
- ``reviewer_changes``: every version of every registry entry, appended in the same commit as
  the change (so the registry as it stood at any instant can be rebuilt, for decision proofs);
- ``review_tasks``: the inbox projection, one row per task, built from review events only;
- ``review_applications``: one row per application the desk has heard of: the lock that
  serialises its events across replicas, and how the application ended (if it has).

Plus the kit's ``outbox`` and ``processed_messages`` (see :func:`metadata`).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from contracts.v1.desk import OrganisationIdentifier, ReviewerProfile
from services.kit.db import UTCDateTime
from services.kit.migrations import service_metadata
from services.review.domain import TaskFacts


class ReviewerRecord(SQLModel, table=True):
    """A reviewer as the registry declares them."""

    __tablename__ = "reviewers"

    reviewer_id: str = Field(sa_column=sa.Column(sa.String(100), primary_key=True))
    name: str = Field(sa_column=sa.Column(sa.String(200), nullable=False))
    #: ``ReviewerRole`` values.
    roles: list[str] = Field(default_factory=list, sa_column=sa.Column(sa.JSON(), nullable=False))
    affiliations: list[str] = Field(
        default_factory=list, sa_column=sa.Column(sa.JSON(), nullable=False)
    )
    ownership_interests: list[str] = Field(
        default_factory=list, sa_column=sa.Column(sa.JSON(), nullable=False)
    )
    #: ``OrganisationIdentifier`` values as JSON (register entries and LEIs).
    declared_identifiers: list[dict[str, str]] = Field(
        default_factory=list,
        sa_column=sa.Column(sa.JSON(), nullable=False, server_default=sa.text("'[]'")),
    )
    active: bool = Field(sa_column=sa.Column(sa.Boolean(), nullable=False))
    created_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))
    updated_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))
    #: Who made the last change (an admin's user id, or ``system:review`` for the demo seed).
    updated_by: str = Field(sa_column=sa.Column(sa.String(200), nullable=False))

    def identifiers(self) -> list[OrganisationIdentifier]:
        """The declared register entries and LEIs, as contract values."""
        return [OrganisationIdentifier.model_validate(i) for i in self.declared_identifiers]


class ReviewerChange(SQLModel, table=True):
    """One change of the registry: the entry as it stood from ``changed_at`` on.

    Rows are only ever inserted. ``profile`` is the whole entry after the change (the
    :class:`~contracts.v1.desk.ReviewerProfile` as JSON), null when the entry was removed.
    """

    __tablename__ = "reviewer_changes"
    __table_args__ = (sa.Index("ix_reviewer_changes_reviewer", "reviewer_id", "change_id"),)

    change_id: int | None = Field(
        default=None, sa_column=sa.Column(sa.Integer(), primary_key=True, autoincrement=True)
    )
    reviewer_id: str = Field(sa_column=sa.Column(sa.String(100), nullable=False))
    #: ``added``, ``replaced``, ``removed``, or ``recorded`` (the entry as it stood when the
    #: history began; what came before it is not known).
    change: str = Field(sa_column=sa.Column(sa.String(20), nullable=False))
    changed_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))
    changed_by: str = Field(sa_column=sa.Column(sa.String(200), nullable=False))
    profile: dict[str, Any] | None = Field(
        default=None, sa_column=sa.Column(sa.JSON(), nullable=True)
    )


def identifiers_json(profile: ReviewerProfile) -> list[dict[str, str]]:
    """A profile's declared identifiers as the registry stores them."""
    return [i.model_dump(mode="json", exclude_none=True) for i in profile.declared_identifiers]


class ReviewTask(SQLModel, table=True):
    """One review task of the inbox: the latest fact of each kind, and the derived status.

    Columns ending in ``_at`` hold the fact times the domain's :class:`TaskFacts` reasons on;
    ``status`` is derived from them on every change and stored so the inbox can filter on it.
    """

    __tablename__ = "review_tasks"
    __table_args__ = (
        # A reviewer's inbox, by status, soonest due first.
        sa.Index("ix_review_tasks_reviewer", "reviewer_id", "status", "due_at"),
        # Closing an application's open tasks when it ends.
        sa.Index("ix_review_tasks_application", "application_id"),
        # Staff views across reviewers (escalations, auditors).
        sa.Index("ix_review_tasks_status_due", "status", "due_at"),
    )

    task_id: str = Field(sa_column=sa.Column(sa.String(100), primary_key=True))
    application_id: str = Field(sa_column=sa.Column(sa.String(100), nullable=False))
    stage: str = Field(sa_column=sa.Column(sa.String(20), nullable=False))
    reviewer_id: str = Field(sa_column=sa.Column(sa.String(100), nullable=False))
    status: str = Field(sa_column=sa.Column(sa.String(20), nullable=False))

    #: ``ApplicationSummary`` as JSON, from the assignment.
    summary: dict[str, Any] | None = Field(
        default=None, sa_column=sa.Column(sa.JSON(), nullable=True)
    )
    #: ``CommitteeQuorum`` as JSON for committee tasks.
    quorum: dict[str, Any] | None = Field(
        default=None, sa_column=sa.Column(sa.JSON(), nullable=True)
    )
    assigned_at: datetime | None = Field(
        default=None, sa_column=sa.Column(UTCDateTime(), nullable=True)
    )
    due_at: datetime | None = Field(default=None, sa_column=sa.Column(UTCDateTime(), nullable=True))

    reminded_at: datetime | None = Field(
        default=None, sa_column=sa.Column(UTCDateTime(), nullable=True)
    )

    escalated_at: datetime | None = Field(
        default=None, sa_column=sa.Column(UTCDateTime(), nullable=True)
    )
    escalated_to: str | None = Field(
        default=None, sa_column=sa.Column(sa.String(100), nullable=True)
    )
    escalation_reason: str | None = Field(
        default=None, sa_column=sa.Column(sa.Text(), nullable=True)
    )

    decided_at: datetime | None = Field(
        default=None, sa_column=sa.Column(UTCDateTime(), nullable=True)
    )
    decision: str | None = Field(default=None, sa_column=sa.Column(sa.String(40), nullable=True))
    comment: str | None = Field(default=None, sa_column=sa.Column(sa.Text(), nullable=True))

    information_requested_at: datetime | None = Field(
        default=None, sa_column=sa.Column(UTCDateTime(), nullable=True)
    )
    #: The ``review.information_requested`` payload as JSON.
    information_request: dict[str, Any] | None = Field(
        default=None, sa_column=sa.Column(sa.JSON(), nullable=True)
    )

    cancelled_at: datetime | None = Field(
        default=None, sa_column=sa.Column(UTCDateTime(), nullable=True)
    )
    cancel_reason: str | None = Field(default=None, sa_column=sa.Column(sa.Text(), nullable=True))

    #: When the application ended and how (copied from ``review_applications``).
    closed_at: datetime | None = Field(
        default=None, sa_column=sa.Column(UTCDateTime(), nullable=True)
    )
    application_outcome: str | None = Field(
        default=None, sa_column=sa.Column(sa.String(20), nullable=True)
    )
    outcome_reasons: list[str] = Field(
        default_factory=list, sa_column=sa.Column(sa.JSON(), nullable=False)
    )
    outcome_by: str | None = Field(default=None, sa_column=sa.Column(sa.String(200), nullable=True))

    #: Every event applied to the task: ``{event_id, type, occurred_at, actor_id, note}``.
    history: list[dict[str, Any]] = Field(
        default_factory=list, sa_column=sa.Column(sa.JSON(), nullable=False)
    )
    updated_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))

    def facts(self) -> TaskFacts:
        """The fact times the domain derives the task's status and SLA state from."""
        return TaskFacts(
            assigned_at=self.assigned_at,
            due_at=self.due_at,
            reminded_at=self.reminded_at,
            escalated_at=self.escalated_at,
            decided_at=self.decided_at,
            information_requested_at=self.information_requested_at,
            cancelled_at=self.cancelled_at,
            closed_at=self.closed_at,
        )


class ReviewApplication(SQLModel, table=True):
    """An application the desk has seen an event about, and how it ended (if it has)."""

    __tablename__ = "review_applications"

    application_id: str = Field(sa_column=sa.Column(sa.String(100), primary_key=True))
    #: ``ApplicationOutcome`` value; null while the application is in progress.
    outcome: str | None = Field(default=None, sa_column=sa.Column(sa.String(20), nullable=True))
    ended_at: datetime | None = Field(
        default=None, sa_column=sa.Column(UTCDateTime(), nullable=True)
    )
    reasons: list[str] = Field(default_factory=list, sa_column=sa.Column(sa.JSON(), nullable=False))
    #: Who ended it (reviewer, firm or system actor id).
    ended_by: str | None = Field(default=None, sa_column=sa.Column(sa.String(200), nullable=True))
    #: The event that ended it.
    end_event_id: uuid.UUID | None = Field(
        default=None, sa_column=sa.Column(sa.Uuid(), nullable=True)
    )


#: This service's own tables (the kit tables are added by :func:`metadata`).
TABLES: tuple[sa.Table, ...] = (
    ReviewerRecord.__table__,  # type: ignore[attr-defined]
    ReviewerChange.__table__,  # type: ignore[attr-defined]
    ReviewTask.__table__,  # type: ignore[attr-defined]
    ReviewApplication.__table__,  # type: ignore[attr-defined]
)


def metadata() -> sa.MetaData:
    """The service's full schema: the Alembic autogenerate target."""
    return service_metadata(*TABLES)
