"""The benchmark service's own table: one aggregate row per subject, as a real service keeps.

A Core table in a private ``MetaData`` (not a SQLModel table), so it stays out of the global
metadata the real services build their schemas from.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from services.kit.migrations import service_metadata

MIGRATIONS = Path(__file__).parent / "migrations"

_STATE = sa.MetaData()
STATE = sa.Table(
    "bench_state",
    _STATE,
    sa.Column("subject", sa.String(100), primary_key=True),
    sa.Column("events", sa.Integer, nullable=False),
)


def metadata() -> sa.MetaData:
    """Kit tables plus :data:`STATE`: what the migration creates."""
    return service_metadata(STATE)
