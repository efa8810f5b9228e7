"""Alembic environment of the zones service (configured in code by the kit)."""

from services.kit.migrations import run_env
from services.zones.models import metadata

run_env(metadata())
