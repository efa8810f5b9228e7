"""The served platform, started once for the fuzzing and authorization-matrix tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fuzz.platform import ServedPlatform, served_platform


@pytest.fixture(scope="session")
def served(pg_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedPlatform]:
    """Every service with an API, under uvicorn on PostgreSQL (see ``tests.fuzz.platform``)."""
    with served_platform(pg_url, tmp_path_factory.mktemp("served")) as platform:
        yield platform
