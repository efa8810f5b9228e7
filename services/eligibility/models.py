"""Tables of the eligibility service database: the kit tables plus the recorded decisions."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from services.kit.db import UTCDateTime
from services.kit.migrations import service_metadata


class EligibilityDecision(SQLModel, table=True):
    """One assessment of one application revision; recorded once, never updated.

    The key (application id, revision) makes the decision idempotent beyond event ids: the same
    revision arriving again, under any event id, finds its decision already recorded and emits
    nothing. The rule set is named by id, version, effective date and file hash, so an auditor
    can re-run exactly the rules that decided.
    """

    __tablename__ = "eligibility_decisions"
    __table_args__ = (
        # Auditors ask "which decisions did this rule-set version make?".
        sa.Index("ix_eligibility_decisions_rule_set", "rule_set_id", "rule_set_version"),
    )

    application_id: str = Field(primary_key=True, max_length=100, description="The application.")
    application_revision: int = Field(
        primary_key=True, description="The revision of the content that was assessed."
    )
    firm_id: str = Field(max_length=100, description="The applicant firm.")
    outcome: str = Field(max_length=32, description="eligible, ineligible or needs_information.")
    rule_set_id: str = Field(max_length=100, description="The rule set evaluated.")
    rule_set_version: str = Field(max_length=50, description="Its version.")
    rule_set_sha256: str = Field(max_length=64, description="SHA-256 of its file's bytes.")
    rule_set_effective_from: date = Field(description="The date it took effect.")
    rule_results: list[dict[str, Any]] = Field(
        sa_column=sa.Column(sa.JSON, nullable=False),
        description=(
            "Each rule's outcome in order: rule_id, status, passed, explanation, missing_fields"
            " and the evaluation error (for operators) if any."
        ),
    )
    missing_fields: list[str] = Field(
        sa_column=sa.Column(sa.JSON, nullable=False),
        description="Content fields the rules needed but the application lacks.",
    )
    submitted_at: datetime = Field(
        sa_column=sa.Column(UTCDateTime, nullable=False),
        description="The first submission time, which chose the rule set.",
    )
    assessed_at: datetime = Field(
        sa_column=sa.Column(UTCDateTime, nullable=False), description="When it was assessed."
    )
    source_event_id: uuid.UUID = Field(description="The submitted/amended event assessed.")
    event_id: uuid.UUID = Field(description="The eligibility.assessed event emitted.")
    correlation_id: uuid.UUID = Field(description="The application's journey.")


#: This service's own tables (the kit tables are added by :func:`metadata`).
TABLES: tuple[sa.Table, ...] = (EligibilityDecision.__table__,)  # type: ignore[attr-defined]


def metadata() -> sa.MetaData:
    """The service's full schema: the Alembic autogenerate target."""
    return service_metadata(*TABLES)
