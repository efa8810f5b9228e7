"""The authorization matrix covers every route of every service, and only routes that exist.

Every service's FastAPI app is built (nothing is started) and its routes enumerated: a route
without an entry in ``services.kit.access.ENDPOINTS`` fails here, so a new endpoint cannot ship
without declaring who may call it. The walk of every entry with every role against the running
services is ``tests/fuzz/test_authorization_matrix.py``.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts

from services.kit.access import ENDPOINTS, Access, endpoint

#: Every process with an HTTP app: its composition root's module and its settings' module.
APPS = {
    "applications": ("services.applications.main", "services.applications.settings"),
    "eligibility": ("services.eligibility.main", "services.eligibility.settings"),
    "zones": ("services.zones.main", "services.zones.settings"),
    "disbursement": ("services.disbursement.main", "services.disbursement.settings"),
    "review": ("services.review.main", "services.review.settings"),
    "audit": ("services.audit.main", "services.audit.settings"),
    "worker": ("workflows.worker", "workflows.settings"),
    "rail": ("services.rail.app", "services.rail.settings"),
    "portal": ("services.portal.main", "services.portal.settings"),
}


def build(name: str, var_dir: Path) -> FastAPI:
    main, settings = APPS[name]
    settings_class = importlib.import_module(settings).Settings
    app: FastAPI = importlib.import_module(main).create_app(settings_class(var_dir=var_dir))
    return app


def routes(app: FastAPI) -> set[tuple[str, str]]:
    """``(method, path template)`` of every route, mounts (static files) as ``GET``."""
    found = set()
    for route in iter_route_contexts(app.routes):
        for method in route.methods or {"GET"}:
            if method != "HEAD":  # answered with GET's route
                found.add((method, route.path))
    return found


@pytest.fixture(scope="module")
def served_routes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, set[tuple[str, str]]]:
    return {name: routes(build(name, tmp_path_factory.mktemp(name))) for name in APPS}


def test_every_route_has_an_entry(served_routes: dict[str, set[tuple[str, str]]]) -> None:
    missing = [
        f"{name}: {method} {path}"
        for name, found in served_routes.items()
        for method, path in sorted(found)
        if endpoint(name, method, path) is None
    ]
    assert not missing, "routes with no entry in services.kit.access.ENDPOINTS:\n" + "\n".join(
        missing
    )


def test_every_entry_is_a_route(served_routes: dict[str, set[tuple[str, str]]]) -> None:
    stale = [
        f"{e.service}: {e.method} {e.path}"
        for e in ENDPOINTS
        if (e.method, e.path) not in served_routes[e.service]
    ]
    assert not stale, "entries with no route:\n" + "\n".join(stale)


def test_token_endpoints_grant_some_role_and_others_none() -> None:
    for entry in ENDPOINTS:
        if entry.access in (Access.TOKEN, Access.SESSION):
            assert entry.grants, entry.key
        else:
            assert not entry.grants, entry.key
