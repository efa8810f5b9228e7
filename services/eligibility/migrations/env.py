"""Alembic environment of the eligibility service (configured in code by the kit)."""

from services.eligibility.models import metadata
from services.kit.migrations import run_env

run_env(metadata())
