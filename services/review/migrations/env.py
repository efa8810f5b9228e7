"""Alembic environment of the review service (configured in code by the kit)."""

from services.kit.migrations import run_env
from services.review.models import metadata

run_env(metadata())
