"""Alembic environment of the audit service (configured in code by the kit)."""

from services.audit.models import metadata
from services.kit.migrations import run_env

run_env(metadata())
