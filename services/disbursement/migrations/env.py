"""Alembic environment of the disbursement service (configured in code by the kit)."""

from services.disbursement.models import metadata
from services.kit.migrations import run_env

run_env(metadata())
