"""Registry ids are safe path segments: a bad one is refused before anything is saved."""

from __future__ import annotations

import pytest

from tests.http.conftest import InProcess
from tests.review.helpers import ADMIN

REGISTRY = "/v1/registry/reviewers"


def entry(reviewer_id: str) -> dict[str, object]:
    return {"reviewer_id": reviewer_id, "name": "Dr. Test", "roles": ["technical"]}


@pytest.mark.parametrize(
    "reviewer_id",
    ["rev/novak", "rév.novak@gaip.example", "rev\u2028novak", "rev\x01novak", "rev novak", "-rev"],
    ids=["slash", "non-ascii", "line-separator", "control", "space", "leading-dash"],
)
async def test_an_unsafe_id_is_a_422_on_the_field_and_nothing_is_saved(
    desk: InProcess, reviewer_id: str
) -> None:
    before = (await desk.client.get(REGISTRY, headers=ADMIN)).json()["items"]
    response = await desk.checked.request("POST", REGISTRY, json=entry(reviewer_id), headers=ADMIN)
    assert response.status_code == 422
    assert [e["pointer"] for e in response.json()["errors"]] == ["#/reviewer_id"]
    assert (await desk.client.get(REGISTRY, headers=ADMIN)).json()["items"] == before


async def test_location_is_encoded_and_leads_to_the_new_entry(desk: InProcess) -> None:
    reviewer_id = "rev.o+connor:ext@gaip.example"
    created = await desk.checked.request("POST", REGISTRY, json=entry(reviewer_id), headers=ADMIN)
    assert created.status_code == 201
    location = created.headers["location"]
    assert location == f"{REGISTRY}/{reviewer_id}"
    found = await desk.client.get(location, headers=ADMIN)
    assert found.json()["reviewer_id"] == reviewer_id
    assert (await desk.client.delete(location, headers=ADMIN)).status_code == 204


async def test_the_documented_pattern_is_the_enforced_one(desk: InProcess) -> None:
    spec = desk.app.openapi()
    schemas = spec["components"]["schemas"]
    body_pattern = schemas["NewReviewer"]["properties"]["reviewer_id"]["pattern"]
    (path_parameter,) = spec["paths"][f"{REGISTRY}/{{reviewer_id}}"]["get"]["parameters"]
    assert path_parameter["schema"]["pattern"] == body_pattern
