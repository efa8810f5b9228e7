"""Alembic environment of the workflow worker (configured in code by the kit)."""

from services.kit.migrations import run_env
from workflows.models import metadata

run_env(metadata())
