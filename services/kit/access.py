"""The authorization matrix: who may call every endpoint of every service, and on whose data.

One table, :data:`ENDPOINTS`, declares for each ``(service, method, path)`` how a request is
authenticated (:class:`Access`) and, for token endpoints, which roles may call it and how far
each one reaches (:class:`Reach`). A role the table does not name is refused with 403; a call
without a valid token is refused with 401 (the kit's :class:`~services.kit.http.RequestGate`).

The table is checked against the services, not trusted:

- ``tests/http/test_access_table.py`` enumerates the routes of every service's FastAPI app and
  fails for a route without an entry (and for an entry without a route), so a new endpoint
  cannot ship without saying who may call it;
- ``tests/fuzz/test_authorization_matrix.py`` walks every entry with every role against the
  running services: firm A on firm B's data, an unassigned reviewer, a supervisor outside an
  escalation, an auditor writing, an admin deciding a task, no token, a forged signature.

Paths are the routes' templates, as FastAPI and the OpenAPI documents spell them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Final

from services.kit.auth import Role
from services.kit.http import is_public_path


class Access(StrEnum):
    """How a caller is told apart."""

    #: A bearer token naming the principal and role (401 without a valid one).
    TOKEN = "token"  # noqa: S105 (a kind of credential, not one)
    #: Anyone: health and the API documents (the gate lets these through without a token).
    PUBLIC = "public"
    #: No token: the simulated rail, a stand-in for a bank reached on the deployment's network.
    NETWORK = "network"
    #: The portal's pages: a signed session cookie; the portal calls the APIs with the
    #: signed-in person's token, so the APIs' own rows of this table decide what it shows.
    SESSION = "session"


class Reach(StrEnum):
    """On whose data a granted role acts."""

    #: Every record of the kind.
    ALL = "all"
    #: The caller's firm's records only; another firm's are answered 404 (ids do not leak).
    OWN_FIRM = "own_firm"
    #: Review tasks assigned to the caller; another reviewer's are answered 404.
    ASSIGNED = "assigned"
    #: A supervisor's own tasks, and (to read, never to decide) tasks escalated to supervisors;
    #: any other task is answered 404.
    ASSIGNED_OR_ESCALATED = "assigned_or_escalated"
    #: The caller's own registry entry; another's is refused with 403.
    SELF = "self"


@dataclass(frozen=True)
class Endpoint:
    """One endpoint and who may call it."""

    service: str
    method: str
    path: str
    grants: Mapping[Role, Reach] = field(default_factory=lambda: MappingProxyType({}))
    access: Access = Access.TOKEN

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.service, self.method, self.path)

    def reach(self, role: Role) -> Reach | None:
        """How far ``role`` reaches here; ``None``: refused (403)."""
        return self.grants.get(role)


def _grants(**reach: Reach) -> Mapping[Role, Reach]:
    return MappingProxyType({Role(role): r for role, r in reach.items()})


_ALL = Reach.ALL
#: Firms act on their own applications; staff read every submitted one.
_FIRM_ACTS = _grants(firm=Reach.OWN_FIRM)
_EVERYONE_READS = _grants(
    firm=Reach.OWN_FIRM, reviewer=_ALL, supervisor=_ALL, auditor=_ALL, admin=_ALL
)
_ADMIN = _grants(admin=_ALL)
_ADMIN_AUDITOR = _grants(admin=_ALL, auditor=_ALL)


def _service(name: str, grants: Mapping[Role, Reach], *routes: str) -> list[Endpoint]:
    """Entries of ``name`` with the same grants, each route as ``"METHOD /path"``."""
    out = []
    for route in routes:
        method, path = route.split(" ", 1)
        out.append(Endpoint(name, method, path, grants))
    return out


_APPLICATIONS = "/v1/applications"
_APPLICATION = "/v1/applications/{application_id}"

ENDPOINTS: Final[tuple[Endpoint, ...]] = (
    # --- applications: firms change their own; staff read; admins cancel ------------------------
    *_service("applications", _EVERYONE_READS, f"GET {_APPLICATIONS}", f"GET {_APPLICATION}"),
    *_service(
        "applications",
        _FIRM_ACTS,
        f"POST {_APPLICATIONS}",
        f"POST {_APPLICATIONS}/submissions",
        f"PUT {_APPLICATION}",
        f"PATCH {_APPLICATION}",
        f"DELETE {_APPLICATION}",
        f"POST {_APPLICATION}/submit",
        f"POST {_APPLICATION}/withdraw",
        f"POST {_APPLICATION}/amend",
        f"POST {_APPLICATION}/offer/accept",
        f"POST {_APPLICATION}/offer/decline",
        f"POST {_APPLICATION}/milestones",
    ),
    *_service(
        "applications",
        _ADMIN,
        f"POST {_APPLICATION}/cancel",
        f"POST {_APPLICATION}/fast-track/{{item}}/revoke",
    ),
    # --- review desk: reviewers their own tasks; supervisors escalations; oversight reads -------
    *_service(
        "review",
        _grants(reviewer=Reach.ASSIGNED, supervisor=Reach.ASSIGNED, auditor=_ALL, admin=_ALL),
        "GET /v1/inbox",
    ),
    *_service(
        "review",
        _grants(
            reviewer=Reach.ASSIGNED,
            supervisor=Reach.ASSIGNED_OR_ESCALATED,
            auditor=_ALL,
            admin=_ALL,
        ),
        "GET /v1/tasks/{task_id}",
    ),
    *_service(
        "review",
        _grants(reviewer=Reach.ASSIGNED, supervisor=Reach.ASSIGNED),
        "POST /v1/tasks/{task_id}/decision",
    ),
    *_service(
        "review",
        _grants(supervisor=_ALL, auditor=_ALL, admin=_ALL),
        "GET /v1/supervisor/escalations",
        "GET /v1/registry/reviewers",
    ),
    # Supervisors reassign, or decide in the reviewer's place, what they can see; the workflow
    # accepts only escalated tasks.
    *_service(
        "review",
        _grants(supervisor=Reach.ASSIGNED_OR_ESCALATED),
        "POST /v1/supervisor/tasks/{task_id}/reassign",
        "POST /v1/supervisor/tasks/{task_id}/decision",
    ),
    *_service(
        "review",
        _grants(reviewer=Reach.SELF, supervisor=_ALL, auditor=_ALL, admin=_ALL),
        "GET /v1/registry/reviewers/{reviewer_id}",
        "GET /v1/registry/reviewers/{reviewer_id}/history",
    ),
    *_service(
        "review",
        _ADMIN,
        "POST /v1/registry/reviewers",
        "PUT /v1/registry/reviewers/{reviewer_id}",
        "DELETE /v1/registry/reviewers/{reviewer_id}",
        "GET /internal/v1/candidates",
    ),
    # --- zones: admins change the catalogue; admins and auditors read ---------------------------
    *_service("zones", _ADMIN_AUDITOR, "GET /v1/zones", "GET /v1/zones/{zone_id}"),
    *_service(
        "zones",
        _ADMIN,
        "POST /v1/zones",
        "PUT /v1/zones/{zone_id}/capacity/{unit_type}",
        "POST /v1/zones/{zone_id}/deactivate",
        "POST /v1/zones/{zone_id}/activate",
    ),
    # --- disbursement: admins fund budgets; admins and auditors read the ledger -----------------
    *_service("disbursement", _ADMIN, "POST /v1/budgets", "POST /v1/budgets/{budget_id}/top-ups"),
    *_service(
        "disbursement",
        _ADMIN_AUDITOR,
        "GET /v1/budgets",
        "GET /v1/budgets/{budget_id}/ledger",
        "GET /v1/awards/{award_id}/ledger",
    ),
    # --- audit: read only, auditors and admins ---------------------------------------------------
    *_service(
        "audit",
        _ADMIN_AUDITOR,
        "GET /v1/log/checkpoint",
        "GET /v1/log/key",
        "GET /v1/log/entries",
        "GET /v1/log/proof/inclusion",
        "GET /v1/log/proof/consistency",
        f"GET {_APPLICATION}/history",
        f"GET {_APPLICATION}/state",
    ),
    # --- the simulated rail: no tokens (a bank's API on the deployment's network) --------------
    *(
        Endpoint("rail", method, path, access=Access.NETWORK)
        for method, path in (
            ("POST", "/v1/payments"),
            ("POST", "/v1/payment-batches"),
            ("GET", "/v1/payments"),
            ("GET", "/v1/payments/{idempotency_key}"),
            ("POST", "/v1/control"),
        )
    ),
    # --- the portal: pages for the signed-in person (a session cookie) --------------------------
    *(
        Endpoint("portal", method, path, access=Access.PUBLIC)
        for method, path in (
            ("GET", "/"),
            ("GET", "/sign-in"),
            ("POST", "/sign-in"),
            # OpenID Connect: off to the provider, and back with its authorization code.
            ("GET", "/sign-in/oidc"),
            ("GET", "/sign-in/callback"),
            ("POST", "/sign-out"),
            ("GET", "/signed-in"),
            ("GET", "/assets"),
            ("GET", "/static/govuk"),
            ("GET", "/static/build"),
            ("GET", "/static/htmx"),
            ("GET", "/static/portal"),
        )
    ),
    *(
        Endpoint("portal", method, path, _FIRM_ACTS, Access.SESSION)
        for method, path in (
            ("GET", "/applications"),
            ("GET", "/applications/new"),
            ("POST", "/applications/new"),
            ("GET", "/applications/{application_id}"),
            ("GET", "/applications/{application_id}/edit"),
            ("POST", "/applications/{application_id}/edit"),
            ("GET", "/applications/{application_id}/amend"),
            ("POST", "/applications/{application_id}/amend"),
            ("POST", "/applications/{application_id}/submit"),
            ("POST", "/applications/{application_id}/withdraw"),
            ("POST", "/applications/{application_id}/offer/accept"),
            ("POST", "/applications/{application_id}/offer/decline"),
            ("POST", "/applications/{application_id}/milestones"),
        )
    ),
    *(
        Endpoint(
            "portal",
            method,
            path,
            _grants(reviewer=Reach.ASSIGNED, supervisor=Reach.ASSIGNED_OR_ESCALATED),
            Access.SESSION,
        )
        for method, path in (
            ("GET", "/inbox"),
            ("GET", "/tasks/{task_id}"),
            ("POST", "/tasks/{task_id}/decision"),
        )
    ),
    Endpoint("portal", "GET", "/supervisor", _grants(supervisor=_ALL), Access.SESSION),
    *(
        Endpoint(
            "portal", "POST", path, _grants(supervisor=Reach.ASSIGNED_OR_ESCALATED), Access.SESSION
        )
        for path in ("/tasks/{task_id}/reassign", "/tasks/{task_id}/supervisor-decision")
    ),
    *(
        Endpoint("portal", method, path, _grants(auditor=_ALL), Access.SESSION)
        for method, path in (
            ("GET", "/audit"),
            ("GET", "/audit/applications/{application_id}"),
            ("GET", "/audit/applications/{application_id}/export"),
            ("GET", "/audit/log"),
        )
    ),
    *(
        Endpoint("portal", method, path, _ADMIN, Access.SESSION)
        for method, path in (
            ("GET", "/admin"),
            ("GET", "/admin/zones"),
            ("POST", "/admin/zones/{zone_id}/capacity/{unit_type}"),
            ("GET", "/admin/budgets"),
            ("GET", "/admin/reviewers"),
            ("POST", "/admin/reviewers"),
            ("GET", "/admin/reviewers/{reviewer_id}"),
            ("POST", "/admin/reviewers/{reviewer_id}"),
            ("POST", "/admin/reviewers/{reviewer_id}/deactivate"),
        )
    ),
)

#: Served to anyone by every service: the kit's public paths (health, the API documents).
PUBLIC: Final = Endpoint("*", "GET", "*", access=Access.PUBLIC)

_BY_KEY: Final = {endpoint.key: endpoint for endpoint in ENDPOINTS}


def endpoint(service: str, method: str, path: str) -> Endpoint | None:
    """The entry of ``method path`` (a route template) of ``service``; ``None`` if it has none."""
    found = _BY_KEY.get((service, method.upper(), path))
    if found is None and method.upper() == "GET" and is_public_path(path):
        return PUBLIC
    return found
