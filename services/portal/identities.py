"""The demo identities of the dev-mode sign-in page.

Firms, an auditor and an admin are fixed here; the reviewers and supervisors are the review
desk's registry as it stands (its demo seed on a fresh platform), read with an admin token, so
the list never drifts from the people the workflow assigns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import httpx

from services.kit.auth import Principal, Role, TokenService
from services.portal.clients import Problem, Unavailable
from services.portal.clients.review import ReviewClient


@dataclass(frozen=True)
class Identity:
    """Someone one can sign in as."""

    key: str
    principal: Principal
    description: str


_FIXED: Final = (
    Identity(
        "firm:ACME",
        Principal(sub="alice@acme.example", role=Role.FIRM, firm_id="ACME", name="Alice Martin"),
        "Acme Vision AI GmbH (firm ACME)",
    ),
    Identity(
        "firm:ORION",
        Principal(sub="kenji@orion.example", role=Role.FIRM, firm_id="ORION", name="Kenji Mori"),
        "Orion Robotics KK (firm ORION)",
    ),
    Identity(
        "auditor",
        Principal(sub="auditor@gaip.example", role=Role.AUDITOR, name="Ines Auditor"),
        "Auditor: reads everything, changes nothing",
    ),
    Identity(
        "admin",
        Principal(sub="admin@gaip.example", role=Role.ADMIN, name="Programme admin"),
        "Administrator: the reviewer registry",
    ),
)

_ADMIN: Final = _FIXED[-1].principal


async def demo_identities(http: httpx.AsyncClient, tokens: TokenService) -> list[Identity]:
    """Every identity of the sign-in page; staff only when the desk answers."""
    found = list(_FIXED)
    try:
        reviewers = await ReviewClient(http, tokens.issue(_ADMIN)).reviewers()
    except (Problem, Unavailable):
        return found
    for entry in reviewers:
        if not entry.get("active", True):
            continue
        roles = entry.get("roles", [])
        supervisor = "supervisor" in roles
        principal = Principal(
            sub=entry["reviewer_id"],
            role=Role.SUPERVISOR if supervisor else Role.REVIEWER,
            name=entry.get("name"),
        )
        what = "Supervisor" if supervisor else "Reviewer: " + ", ".join(roles)
        found.append(Identity(f"staff:{principal.sub}", principal, f"{what} ({principal.sub})"))
    return found
