"""The reviewer registry: admin CRUD, read access, the demo seed and the candidates endpoint."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from pydantic import TypeAdapter

from contracts.conflicts import conflicts, named
from contracts.v1.desk import ReviewerProfile
from services.kit.db import create_engine, create_session_factory
from services.kit.migrations import upgrade_to_head
from services.kit.uow import UnitOfWorkFactory
from services.review.main import MIGRATIONS, seed_registry
from services.review.seed import demo_reviewers
from services.review.settings import Settings
from services.review.store import reviewer_history
from tests.review.conftest import Desk
from tests.review.helpers import (
    ADMIN,
    AUDITOR,
    FIRM,
    NOVAK,
    SUPERVISOR,
    TANAKA,
    auth,
    new_id,
    reviewer,
)

pytestmark = pytest.mark.integration

DEMO_IDS = [p.reviewer_id for p in demo_reviewers()]
PROFILES = TypeAdapter(list[ReviewerProfile])


def entry(rid: str, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "reviewer_id": rid,
        "name": "Dr. Erik Lindqvist",
        "roles": ["technical", "committee"],
        "affiliations": ["KTH Royal Institute of Technology"],
        "ownership_interests": ["Nordic Vision Holdings AB"],
        "active": True,
    }
    body.update(changes)
    return body


def reviewer_id() -> str:
    return f"{new_id('rev')}@gaip.example"


# --- the demo seed ------------------------------------------------------------------------------


async def test_the_desk_starts_with_the_demo_reviewers(desk: Desk) -> None:
    response = await desk.client.get("/v1/registry/reviewers", headers=ADMIN)
    assert response.status_code == 200
    listed = {item["reviewer_id"]: item for item in response.json()["items"]}
    assert set(DEMO_IDS) <= set(listed)
    assert listed[TANAKA]["affiliations"] == ["Kyoto University", "Acme Vision AI GmbH"]
    assert listed[TANAKA]["updated_by"] == "system:review"
    assert listed["sup.meyer@gaip.example"]["roles"] == ["supervisor"]


def test_demo_registry_staffs_every_stage_under_separation_of_duties() -> None:
    """An Acme application: Tanaka conflicts; one person per stage; still 3 for the committee."""
    firm = named(["Acme Vision AI GmbH", "Acme Holdings SE"])
    eligible = [p for p in demo_reviewers() if not conflicts(p, firm)]
    taken: set[str] = set()
    for stage in ("technical", "security", "finance"):
        person = next(p for p in eligible if stage in p.roles and p.reviewer_id not in taken)
        taken.add(person.reviewer_id)
    committee = [p for p in eligible if "committee" in p.roles and p.reviewer_id not in taken]
    assert len(committee) >= 3


def test_seeding_follows_dev_mode_unless_set(tmp_path: Path) -> None:
    assert Settings(var_dir=tmp_path).seed_demo_reviewers is True
    production = Settings(var_dir=tmp_path, dev_mode=False, jwt_secret="s" * 40)
    assert production.seed_demo_reviewers is False
    assert Settings(var_dir=tmp_path, seed_demo_reviewers=False).seed_demo_reviewers is False


async def test_seed_fills_an_empty_registry_once(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'review.db'}")
    try:
        await upgrade_to_head(engine, MIGRATIONS)
        uow = UnitOfWorkFactory(create_session_factory(engine))
        assert await seed_registry(uow) == len(DEMO_IDS)
        assert await seed_registry(uow) == 0  # not empty any more: an admin's registry is kept
        [seeded] = await reviewer_history(uow, TANAKA)
        assert (seeded.change, seeded.changed_by) == ("added", "system:review")
        assert seeded.profile is not None
        assert seeded.profile["affiliations"] == ["Kyoto University", "Acme Vision AI GmbH"]
    finally:
        await engine.dispose()


async def test_the_history_begins_with_the_entries_as_they_stood(tmp_path: Path) -> None:
    """Entries older than the history table are recorded as they stood at their last change."""
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'review.db'}")
    try:
        await upgrade_to_head(engine, MIGRATIONS, revision="0003")
        uow = UnitOfWorkFactory(create_session_factory(engine))
        seeded = await seed_registry_before_history(engine)
        await upgrade_to_head(engine, MIGRATIONS)
        [recorded] = await reviewer_history(uow, NOVAK)
        assert recorded.change == "recorded"
        assert recorded.changed_at == seeded
        assert recorded.profile is not None
        assert ReviewerProfile.model_validate(recorded.profile).reviewer_id == NOVAK
    finally:
        await engine.dispose()


async def seed_registry_before_history(engine: Any) -> datetime:
    """One reviewer row as revision 0003 stored it; its ``updated_at``."""
    at = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
    async with engine.begin() as conn:
        await conn.execute(
            sa.text(
                "INSERT INTO reviewers (reviewer_id, name, roles, affiliations, "
                "ownership_interests, declared_identifiers, active, created_at, updated_at, "
                "updated_by) VALUES (:id, 'Novak', '[\"technical\"]', '[]', '[]', '[]', 1, "
                ":at, :at, 'admin@gaip.example')"
            ),
            {"id": NOVAK, "at": at.isoformat()},
        )
    return at


# --- CRUD ---------------------------------------------------------------------------------------


async def test_admin_adds_changes_and_removes_a_reviewer(desk: Desk) -> None:
    rid = reviewer_id()
    created = await desk.client.post("/v1/registry/reviewers", json=entry(rid), headers=ADMIN)
    assert created.status_code == 201, created.text
    assert created.headers["location"] == f"/v1/registry/reviewers/{rid}"
    body = created.json()
    assert body["updated_by"] == "admin@gaip.example"
    assert body["roles"] == ["technical", "committee"]

    again = await desk.client.post("/v1/registry/reviewers", json=entry(rid), headers=ADMIN)
    assert again.status_code == 409
    assert again.headers["content-type"] == "application/problem+json"

    update = {k: v for k, v in entry(rid).items() if k != "reviewer_id"}
    update.update(roles=["finance"], affiliations=[], active=False)
    changed = await desk.client.put(f"/v1/registry/reviewers/{rid}", json=update, headers=ADMIN)
    assert changed.status_code == 200, changed.text
    assert (changed.json()["roles"], changed.json()["active"]) == (["finance"], False)
    fetched = await desk.client.get(f"/v1/registry/reviewers/{rid}", headers=AUDITOR)
    assert fetched.json() == changed.json()

    listed = await desk.client.get(
        "/v1/registry/reviewers", params={"role": "finance", "active": "false"}, headers=ADMIN
    )
    assert rid in [item["reviewer_id"] for item in listed.json()["items"]]

    removed = await desk.client.delete(f"/v1/registry/reviewers/{rid}", headers=ADMIN)
    assert removed.status_code == 204
    for method in ("get", "delete"):
        gone = await desk.client.request(method, f"/v1/registry/reviewers/{rid}", headers=ADMIN)
        assert gone.status_code == 404
    missing = await desk.client.put(f"/v1/registry/reviewers/{rid}", json=update, headers=ADMIN)
    assert missing.status_code == 404

    # Every version is kept, the removal too: the registry as it stood at any instant.
    history = await desk.client.get(f"/v1/registry/reviewers/{rid}/history", headers=AUDITOR)
    assert history.status_code == 200, history.text
    items = history.json()["items"]
    assert [i["change"] for i in items] == ["added", "replaced", "removed"]
    assert [i["changed_by"] for i in items] == ["admin@gaip.example"] * 3
    assert items[0]["profile"]["roles"] == ["technical", "committee"]
    assert items[1]["profile"]["roles"] == ["finance"]
    assert items[1]["changed_at"] == changed.json()["updated_at"]
    assert items[2]["profile"] is None
    never = await desk.client.get(
        f"/v1/registry/reviewers/{reviewer_id()}/history", headers=AUDITOR
    )
    assert never.status_code == 404


async def test_declared_identifiers_are_kept_and_reach_the_workflow(desk: Desk) -> None:
    rid = reviewer_id()
    identifiers = [
        {"register_country": "DE", "register_number": "HRB 654321"},
        {"lei": "529900ACMEHOLDINGS14"},
    ]
    created = await desk.client.post(
        "/v1/registry/reviewers", json=entry(rid, declared_identifiers=identifiers), headers=ADMIN
    )
    assert created.status_code == 201, created.text
    try:
        assert created.json()["declared_identifiers"] == [
            {"register_country": "DE", "register_number": "HRB 654321", "lei": None},
            {"register_country": None, "register_number": None, "lei": "529900ACMEHOLDINGS14"},
        ]
        (profile,) = [p for p in await candidates(desk, stage="technical") if p.reviewer_id == rid]
        assert [
            i.model_dump(exclude_none=True) for i in profile.declared_identifiers
        ] == identifiers
        # The optional filter takes names only; the workflow, which has the firm's register
        # entries and LEIs, finds identifier conflicts on the profiles (test_real_workflow).
        named_only = await candidates(desk, stage="technical", organisation=["Acme Holdings SE"])
        assert rid in [p.reviewer_id for p in named_only]

        update = {k: v for k, v in entry(rid).items() if k != "reviewer_id"}
        changed = await desk.client.put(f"/v1/registry/reviewers/{rid}", json=update, headers=ADMIN)
        assert changed.json()["declared_identifiers"] == []
    finally:
        await desk.client.delete(f"/v1/registry/reviewers/{rid}", headers=ADMIN)


@pytest.mark.parametrize(
    ("changes", "pointer"),
    [
        (
            {"declared_identifiers": [{"lei": "529900ACMEHOLDINGS15"}]},
            "#/declared_identifiers/0/lei",
        ),
        ({"declared_identifiers": [{"register_country": "DE"}]}, "#/declared_identifiers/0"),
        ({"roles": []}, "#/roles"),
        ({"roles": ["astrologer"]}, "#/roles/0"),
        ({"reviewer_id": "has spaces"}, "#/reviewer_id"),
        ({"name": ""}, "#/name"),
        ({"nickname": "Erik"}, "#/nickname"),
    ],
)
async def test_invalid_entries_are_422_with_a_pointer(
    desk: Desk, changes: dict[str, Any], pointer: str
) -> None:
    response = await desk.client.post(
        "/v1/registry/reviewers", json=entry(reviewer_id(), **changes), headers=ADMIN
    )
    assert response.status_code == 422
    assert pointer in [e.get("pointer") for e in response.json()["errors"]]


async def test_only_admins_change_the_registry(desk: Desk) -> None:
    rid = reviewer_id()
    update = {k: v for k, v in entry(rid).items() if k != "reviewer_id"}
    for headers in (AUDITOR, SUPERVISOR, reviewer(NOVAK), FIRM):
        post = await desk.client.post("/v1/registry/reviewers", json=entry(rid), headers=headers)
        put = await desk.client.put(f"/v1/registry/reviewers/{NOVAK}", json=update, headers=headers)
        delete = await desk.client.delete(f"/v1/registry/reviewers/{NOVAK}", headers=headers)
        assert [post.status_code, put.status_code, delete.status_code] == [403, 403, 403]
    assert (await desk.client.get(f"/v1/registry/reviewers/{NOVAK}", headers=ADMIN)).json()[
        "active"
    ]


async def test_who_reads_the_registry(desk: Desk) -> None:
    for headers in (ADMIN, AUDITOR, SUPERVISOR):
        assert (await desk.client.get("/v1/registry/reviewers", headers=headers)).status_code == 200
    for headers in (reviewer(NOVAK), FIRM):
        assert (await desk.client.get("/v1/registry/reviewers", headers=headers)).status_code == 403
    own = await desk.client.get(f"/v1/registry/reviewers/{NOVAK}", headers=reviewer(NOVAK))
    assert own.status_code == 200
    other = await desk.client.get(f"/v1/registry/reviewers/{TANAKA}", headers=reviewer(NOVAK))
    assert other.status_code == 403
    for path, status in ((NOVAK, 200), (TANAKA, 403)):
        history = await desk.client.get(
            f"/v1/registry/reviewers/{path}/history", headers=reviewer(NOVAK)
        )
        assert history.status_code == status
    for headers in (ADMIN, AUDITOR, SUPERVISOR):
        history = await desk.client.get(f"/v1/registry/reviewers/{TANAKA}/history", headers=headers)
        assert history.status_code == 200
    assert (
        await desk.client.get(f"/v1/registry/reviewers/{TANAKA}/history", headers=FIRM)
    ).status_code == 403
    anonymous = await desk.client.get("/v1/registry/reviewers")
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"] == "Bearer"


# --- candidates ---------------------------------------------------------------------------------


async def candidates(desk: Desk, **params: Any) -> list[ReviewerProfile]:
    response = await desk.client.get(
        "/internal/v1/candidates", params=params, headers=auth("admin", "system:workflows")
    )
    assert response.status_code == 200, response.text
    return PROFILES.validate_python(response.json())


async def test_candidates_are_active_reviewers_with_the_stage_role(desk: Desk) -> None:
    active, inactive = reviewer_id(), reviewer_id()
    for rid, is_active in ((active, True), (inactive, False)):
        created = await desk.client.post(
            "/v1/registry/reviewers",
            json=entry(rid, roles=["finance"], active=is_active),
            headers=ADMIN,
        )
        assert created.status_code == 201
    try:
        finance = await candidates(desk, stage="finance")
        ids = [p.reviewer_id for p in finance]
        assert "rev.haddad@gaip.example" in ids
        assert active in ids
        assert inactive not in ids
        assert ids == sorted(ids)
        assert all("finance" in p.roles and p.active for p in finance)

        technical = [p.reviewer_id for p in await candidates(desk, stage="technical")]
        assert {NOVAK, TANAKA} <= set(technical)
        assert "sup.meyer@gaip.example" not in technical
        # Escalations go to supervisors: the workflow asks for them the same way.
        supervisors = [p.reviewer_id for p in await candidates(desk, stage="supervisor")]
        assert "sup.meyer@gaip.example" in supervisors
        assert NOVAK not in supervisors
    finally:
        for rid in (active, inactive):
            await desk.client.delete(f"/v1/registry/reviewers/{rid}", headers=ADMIN)


async def test_candidates_can_leave_out_conflicted_reviewers(desk: Desk) -> None:
    technical = await candidates(
        desk, stage="technical", organisation=["ACME Vision AI GmbH", "Acme Holdings SE"]
    )
    ids = [p.reviewer_id for p in technical]
    assert NOVAK in ids
    assert TANAKA not in ids


async def test_candidates_need_an_admin_and_a_stage(desk: Desk) -> None:
    for headers in (reviewer(NOVAK), AUDITOR, SUPERVISOR, FIRM):
        response = await desk.client.get(
            "/internal/v1/candidates", params={"stage": "technical"}, headers=headers
        )
        assert response.status_code == 403
    assert (await desk.client.get("/internal/v1/candidates")).status_code == 401
    for params in ({}, {"stage": "eligibility"}):
        response = await desk.client.get("/internal/v1/candidates", params=params, headers=ADMIN)
        assert response.status_code == 422
        assert response.json()["errors"][0]["parameter"] == "stage"
