"""Composition root of the applications service: ``create_app`` wires it, ``main`` runs it."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from contracts.topics import TOPICS, get_topic
from services.applications.api import router
from services.applications.commands import EVENTS_TOPIC, PRODUCER
from services.applications.handlers import project_status
from services.applications.offer_routes import router as offer_router
from services.applications.settings import Settings
from services.kit.runtime import Service, run_service

MIGRATIONS = Path(__file__).parent / "migrations"

DESCRIPTION = """\
The firm-facing API of the Global AI Partnerships program: prepare, submit, amend, withdraw
and track applications for grants, technology-zone space and regulatory fast-track.

## Authentication

Every request carries `Authorization: Bearer <JWT>`. A missing, expired or wrongly signed
token gets **401**. Roles:

- `firm:<firm-id>`: everything below, on its own applications only. Another firm's
  application is answered **404**, never 403, so ids do not leak.
- `reviewer`, `supervisor`, `auditor`, `admin`: read-only. They list and get submitted
  applications of every firm (drafts stay private to their firm); any change is **403**.

Development tokens: `incentives token --role firm --firm ACME [--user alice@acme.example]`.

## The journey

1. `POST /v1/applications` creates a **draft**: any part may be missing. Edit it with `PUT`
   (replace) or `PATCH` (JSON merge patch), delete it with `DELETE`. Its
   `missing_for_submission` lists what is still needed.
2. `POST /v1/applications/{id}/submit` submits the draft (or `POST /v1/applications/submissions`
   creates and submits in one step). Both need an `Idempotency-Key` header: a retry with the same
   key and body replays the first response and never submits twice; the same key with another
   body gets 422.
3. From then on the **status** follows the program's decisions:

| status | meaning | firm may |
| --- | --- | --- |
| `draft` | not submitted yet | edit, submit, delete |
| `submitted` | received (or amended); eligibility is assessing it | withdraw |
| `eligible` | passed the eligibility rules; reviews follow | withdraw |
| `information_requested` | the program needs more: see `information_request` | amend, withdraw |
| `under_review` | technical, security, finance or committee review | withdraw |
| `approved` | approved; zone space and the award follow | withdraw |
| `award_opened` | the grant award is open; tranches follow milestones | withdraw |
| `ineligible` | closed: failed eligibility rules (reasons in `status_reasons`) | — |
| `rejected` | closed by a review decision (reasons in `status_reasons`) | — |
| `withdrawn` | closed by the firm, or when requested information did not arrive in time | — |

The `timeline` records every status change with its time, actor and reasons, and notable
facts (zone allocations, tranche payments). `eligibility` shows the rule set (id, version and
content hash) that assessed the latest revision, rule by rule.

## Errors

Every error is an RFC 9457 problem (`application/problem+json`). Validation problems (422)
list each failed field in `errors` with a JSON Pointer into the body (`pointer`), or the
`header`/`parameter` at fault; a body that is not UTF-8 JSON is a 422 whose one error points at
the whole body (`#`, type `json_invalid`). Changing an application in a status that does not
allow it is 409, with the current `status` and the `allowed_actions`. Bodies over the size
limit get 413, and requests without a valid token 401, before the body is read.

Money is a decimal **string** with an ISO 4217 currency (`{"amount": "250000.00", "currency":
"EUR"}`), never a JSON number: greater than zero, no finer than the currency's minor unit (no
decimals for JPY, two for EUR, three for KWD), and in a currency money can be in (precious
metals, the SDR and fund codes are refused). Percentages are strings from `"0"` to `"100"`;
times are RFC 3339 strings with an offset (`2026-11-20T09:00:00Z`), never numbers, and an
attestation cannot be signed in the future.
"""


#: This service's own events, recorded on the timeline when they are written: the projection
#: skips them without a database round trip (``application.withdrawn`` may also come from the
#: workflow, so it is projected).
OWN_EVENTS = frozenset({"application.submitted", "application.amended"})


def consumed_topics() -> tuple[str, ...]:
    """The topics this service consumes: every ``*.events`` topic."""
    return tuple(t.name for t in TOPICS if not t.is_command_topic)


def projected_types() -> frozenset[str]:
    """The message types the status projection handles."""
    return frozenset(
        message_type
        for name in consumed_topics()
        for message_type in get_topic(name).types
        if message_type not in OWN_EVENTS
    )


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the ASGI app; the broker, database and relay start with its lifespan."""
    settings = settings or Settings()
    service = Service(settings, migrations=MIGRATIONS)
    service.consume(
        *consumed_topics(),
        handler=project_status,
        types=projected_types(),
        description=(
            "Downstream events feeding the firm-facing status projection (status, timeline, "
            "eligibility decision, information requests)."
        ),
    )
    service.sends(
        EVENTS_TOPIC,
        get_topic(EVENTS_TOPIC).types,
        producer=PRODUCER,
        description=(
            "What firms do with their applications, written to the outbox with the state change"
            " and published by the relay."
        ),
    )
    app = service.create_app(
        title="Applications API",
        description=DESCRIPTION,
        routers=[router, offer_router],
    )
    return app


def main() -> None:
    """Run the service until SIGTERM/SIGINT, configured by environment."""
    run_service(Settings, create_app)


if __name__ == "__main__":
    main()
