"""Alembic environment of the applications service (configured in code by the kit)."""

from services.applications.models import metadata
from services.kit.migrations import run_env

run_env(metadata())
