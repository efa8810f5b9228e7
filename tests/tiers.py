"""Test tiers derived from the fixtures a test uses, so a reader (and ``make test-unit``) can tell
a test that needs a broker from one that needs nothing.

A fixture that starts a binary or needs a server declares it with :func:`starts`. Every test
that uses such a fixture, directly or through another fixture, is marked with what it starts
and with ``integration``; ``make test-unit`` deselects ``integration`` and ``e2e``. Under
``make test-unit`` (``INCENTIVES_TEST_TIER=unit``) a starting fixture fails the test loudly
instead of starting anything, so a test cannot slip a server into the unit tier.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from typing import TypeVar

import pytest

#: Marker -> what it means; registered by the root conftest (``--strict-markers`` is on).
MARKERS: dict[str, str] = {
    "integration": "starts a binary or needs a server (derived from the fixtures it uses)",
    "e2e": "starts the whole embedded platform",
    "kafka": "starts a Tansu broker",
    "temporal": "starts a Temporal server (dev or time-skipping)",
    "postgres": "needs PostgreSQL",
    "browser": "starts Chromium (Debian's, driven by Playwright)",
    "oidc": "starts the test OpenID provider (oauth2-mock-server, on Node.js)",
    "node": "starts Node.js (the official AsyncAPI parser)",
}

#: Fixture name -> the marker of what it starts.
STARTERS: dict[str, str] = {}

#: The environment variable ``make test-unit`` sets.
TIER_VARIABLE = "INCENTIVES_TEST_TIER"

_F = TypeVar("_F", bound=Callable[..., object])


def starts(marker: str) -> Callable[[_F], _F]:
    """Declare that the decorated fixture starts (or needs) what ``marker`` names.

    Put it above ``@pytest.fixture``; the fixture keeps its name.
    """
    if marker not in MARKERS:
        raise ValueError(f"unknown tier marker {marker!r}")

    def declare(fixture: _F) -> _F:
        name = getattr(fixture, "name", None) or getattr(fixture, "__name__", None)
        if not isinstance(name, str):
            raise TypeError(f"cannot tell the name of fixture {fixture!r}")
        STARTERS[name] = marker
        return fixture

    return declare


#: Under ``make test-unit``, property tests try this share of their examples (at least
#: :data:`UNIT_MIN_EXAMPLES`); ``make test`` tries them all.
UNIT_EXAMPLES_SHARE = 4
UNIT_MIN_EXAMPLES = 10


def unit_tier() -> bool:
    """True under ``make test-unit``."""
    return os.environ.get(TIER_VARIABLE) == "unit"


def examples(count: int) -> int:
    """How many examples a property test with ``count`` of them tries in this tier.

    The unit tier is the loop a developer runs while working, in under a minute; the full suite
    (``make test``, CI) keeps every property test at full strength.
    """
    return max(UNIT_MIN_EXAMPLES, count // UNIT_EXAMPLES_SHARE) if unit_tier() else count


def load_hypothesis_profile() -> None:
    """Fewer examples by default under ``make test-unit`` (see :func:`examples`)."""
    if not unit_tier():
        return
    from hypothesis import settings

    settings.register_profile("unit", max_examples=examples(settings.default.max_examples))
    settings.load_profile("unit")


def refuse_in_unit_tier(what: str) -> None:
    """Fail the test when ``make test-unit`` runs: ``what`` would start a server."""
    if os.environ.get(TIER_VARIABLE) == "unit":
        pytest.fail(
            f"{what} is not started under make test-unit; the test that asked for it must "
            f"use a fixture declared with tests.tiers.starts() so it is marked integration",
            pytrace=False,
        )


def forbid_servers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under ``make test-unit``, make every way of starting a server fail the test loudly.

    Covers the starters used outside fixtures too: the embedded broker and Temporal dev server
    classes, and Temporal's test environments.
    """
    if os.environ.get(TIER_VARIABLE) != "unit":
        return
    from temporalio.testing import WorkflowEnvironment

    from services.cli.embedded import TansuBroker, TemporalDevServer

    def refusing(what: str) -> Callable[..., object]:
        def refuse(*_args: object, **_kwargs: object) -> object:
            refuse_in_unit_tier(what)
            raise AssertionError("unreachable")

        return refuse

    monkeypatch.setattr(TansuBroker, "start", refusing("a Tansu broker"))
    monkeypatch.setattr(TemporalDevServer, "start", refusing("a Temporal dev server"))
    for starter in ("start_time_skipping", "start_local"):
        monkeypatch.setattr(WorkflowEnvironment, starter, refusing(f"Temporal ({starter})"))


def register(config: pytest.Config) -> None:
    """Register the tier markers."""
    for name, meaning in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {meaning}")


def mark(items: list[pytest.Item]) -> None:
    """Mark every test with what its fixtures start."""
    for item in items:
        started = {STARTERS[name] for name in getattr(item, "fixturenames", ()) if name in STARTERS}
        for marker in sorted(started):
            item.add_marker(marker)
        if started:
            item.add_marker("integration")


#: What each marker starts, for the run's one-line summary.
_STARTED = {
    "kafka": "a Tansu broker",
    "temporal": "Temporal",
    "postgres": "PostgreSQL",
    "e2e": "the embedded platform",
    "oidc": "an OpenID provider",
}


def summary(items: list[pytest.Item]) -> str:
    """One line: what the selected tests start, and for how many tests."""
    counts = Counter(
        marker for item in items for marker in _STARTED if item.get_closest_marker(marker)
    )
    if not counts:
        return "this run starts no server"
    parts = ", ".join(f"{_STARTED[m]} ({counts[m]} tests)" for m in _STARTED if counts[m])
    return f"this run starts: {parts}"
