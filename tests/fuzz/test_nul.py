"""The NUL character, which PostgreSQL's text types cannot store, is a 422 on the field.

Each request here answered 500 on PostgreSQL (found by fuzzing): the value reached a text
column and the database refused it. The kit's gate now refuses it before any route runs,
naming the field.
"""

from __future__ import annotations

from typing import Any

import pytest
import requests

from tests.fuzz.platform import ServedPlatform
from tests.fuzz.tokens import ROLE_TOKENS

CASES: list[tuple[str, str, str, str, dict[str, Any] | None, str]] = [
    (
        "review",
        "admin",
        "POST",
        "/v1/registry/reviewers",
        {"reviewer_id": "rev.nul", "name": "Dr.\u0000Nul", "roles": ["technical"]},
        "#/name",
    ),
    (
        "zones",
        "admin",
        "POST",
        "/v1/zones",
        {
            "id": "zone-nul",
            "name": "North\u0000Park",
            "city": "Nowhere",
            "sectors": ["health"],
            "capacity": {"office_seat": 1},
        },
        "#/name",
    ),
    ("applications", "admin", "GET", "/v1/applications?firm_id=A%00B", None, "firm_id"),
    ("audit", "auditor", "GET", "/v1/applications/app%00x/history", None, "application_id"),
    ("rail", "none", "GET", "/v1/payments/key%00x", None, "idempotency_key"),
]


@pytest.mark.parametrize(
    ("service", "role", "method", "path", "body", "where"),
    CASES,
    ids=[f"{c[0]}-{c[2]}-{c[3].split('?')[0]}" for c in CASES],
)
def test_a_nul_character_is_refused_on_its_field(
    served: ServedPlatform,
    service: str,
    role: str,
    method: str,
    path: str,
    body: dict[str, Any] | None,
    where: str,
) -> None:
    response = requests.request(
        method, served.urls[service] + path, json=body, headers=ROLE_TOKENS[role](), timeout=30
    )
    assert response.status_code == 422, response.text
    (error,) = response.json()["errors"]
    assert error["type"] == "nul_character"
    assert where in (error.get("pointer"), error.get("parameter"))
