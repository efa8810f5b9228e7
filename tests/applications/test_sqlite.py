"""The embedded default: the same API on a SQLite file (what ``incentives up`` runs)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from services.applications.main import create_app
from services.applications.settings import Settings
from tests.applications.helpers import auth, content, key

pytestmark = pytest.mark.integration

BASE = "/v1/applications"


@pytest.fixture
async def client(tmp_path: Path, kafka_bootstrap: str) -> AsyncIterator[httpx.AsyncClient]:
    # Its own consumer group: the package's PostgreSQL service consumes in the default one.
    settings = Settings(
        var_dir=tmp_path, kafka_bootstrap=kafka_bootstrap, consumer_group_prefix="sqlite-"
    )
    assert settings.database_url.startswith("sqlite+aiosqlite://")
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client


async def test_drafts_submissions_paging_and_idempotency_on_sqlite(
    client: httpx.AsyncClient,
) -> None:
    headers = auth("firm", "SQLITE")
    draft = (await client.post(BASE, json={"firm": {"legal_name": "Acme"}}, headers=headers)).json()
    patched = await client.patch(
        f"{BASE}/{draft['id']}", json={**content(), "firm": content()["firm"]}, headers=headers
    )
    assert patched.json()["missing_for_submission"] == []
    idem = {**headers, "Idempotency-Key": key()}
    results = await asyncio.gather(
        *(client.post(f"{BASE}/{draft['id']}/submit", headers=idem) for _ in range(3))
    )
    assert sorted(r.status_code for r in results) == [200, 200, 200]
    assert sum(r.headers.get("idempotent-replayed") == "true" for r in results) == 2
    for _ in range(3):
        created = await client.post(
            f"{BASE}/submissions", json=content(), headers={**headers, "Idempotency-Key": key()}
        )
        assert created.status_code == 201
    seen: list[str] = []
    cursor = None
    while True:
        query = f"?limit=3&cursor={cursor}" if cursor else "?limit=3"
        page = (await client.get(f"{BASE}{query}", headers=headers)).json()
        seen += [item["id"] for item in page["items"]]
        if not (cursor := page["next_cursor"]):
            break
    assert len(seen) == len(set(seen)) == 4
    assert seen[-1] == draft["id"]
    withdrawn = await client.post(
        f"{BASE}/{draft['id']}/withdraw", json={"reason": "Not now."}, headers=headers
    )
    assert withdrawn.json()["status"] == "withdrawn"
