"""Alembic environment of the benchmark service: the kit tables plus the hop's state table."""

from services.kit.migrations import run_env
from tests.bench.schema import metadata

run_env(metadata())
