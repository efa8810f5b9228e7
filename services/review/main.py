"""Composition root of the review service: ``create_app`` wires it, ``main`` runs it.

Start-up order:

1. the kit's lifespan migrates the database and connects to the broker in the background;
2. the demo reviewers are seeded when the registry is empty and seeding is on;
3. the Temporal client connects in the background (``/health`` reports ``temporal`` until then;
   a decision meanwhile is a 503 problem).

Shutdown drops the Temporal client first, then the kit stops the consumer, relay and engine.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlmodel import col, select

from contracts.envelope import utcnow
from contracts.topics import get_topic
from services.kit.db import insert_ignore
from services.kit.logging import get_logger
from services.kit.problems import problem_response, problem_type
from services.kit.runtime import Service, run_service
from services.kit.uow import UnitOfWorkFactory
from services.review.api import internal_router, registry_router, router
from services.review.handlers import HANDLED_TYPES, project_inbox
from services.review.models import ReviewerRecord, identifiers_json
from services.review.seed import SEED_ACTOR, demo_reviewers
from services.review.settings import Settings
from services.review.store import registry_change
from services.review.temporal import DeskProblem, TemporalDesk

MIGRATIONS = Path(__file__).parent / "migrations"

log = get_logger(__name__)

DESCRIPTION = """\
The reviewer desk of the Global AI Partnerships program: reviewers see the tasks assigned to
them and decide them; supervisors see escalations; admins manage the reviewer registry.

## Authentication

Every request carries `Authorization: Bearer <JWT>` (401 without a valid one). Roles:

| role | may |
| --- | --- |
| `reviewer` | read and decide **their own** tasks (`sub` = registry id); read own registry entry |
| `supervisor` | the same, plus read escalated tasks and the registry |
| `auditor` | read every task, escalation and registry entry; change nothing |
| `admin` | read everything; manage the registry; list candidates (the workflow's activity) |
| `firm:<id>` | nothing here (403) |

Another reviewer's task is answered **404**, so task ids do not leak. Development tokens:
`incentives token --role reviewer --user rev.novak@gaip.example`.

## The inbox

The inbox is a projection of the workflow's review events (`review.events`), final decisions
(`approvals.events`) and withdrawals: a task appears a moment after it is assigned. Each task
has a `status` (`open`, `decided`, `cancelled` when the workflow no longer needs it, `closed`
when the application ended while it was open) and an `sla_state` (`on_time`, `reminder_sent`,
`overdue`, `escalated`).

## Deciding

`POST /v1/tasks/{task_id}/decision` with an `Idempotency-Key` sends the decision to the
application's `IncentiveApproval` workflow as the `decide` update. Its validator refuses, with
the reason in the problem's `reason` member: `wrong_role`, `not_assigned`,
`conflict_of_interest`, `separation_of_duties` (403), `stage_not_open`, `duplicate_decision`
(409), `invalid_request` (422). Temporal unreachable: 503, retry with the same key.

Every error is an RFC 9457 problem (`application/problem+json`). A body that is not UTF-8 JSON
is a 422 whose one error points at the whole body (`#`, type `json_invalid`). Requests without
a valid token (401) and bodies over the size limit (413) are refused before the body is read.

Registry ids are 1 to 100 ASCII letters, digits and `. _ @ + : -`, starting with a letter or
digit: each is a path segment of its entry's URL.
"""


def consumed_topics() -> tuple[str, ...]:
    """The topics the inbox is built from."""
    return (
        get_topic("review.events").name,
        get_topic("approvals.events").name,
        get_topic("applications.events").name,
    )


async def seed_registry(uow_factory: UnitOfWorkFactory) -> int:
    """Insert the demo reviewers if the registry is empty; how many were inserted.

    Insert-or-ignore: replicas starting together may both find the registry empty, and the
    second one's rows then simply are not inserted again.
    """
    async with uow_factory() as uow:
        session = uow.session
        if (await session.exec(select(ReviewerRecord.reviewer_id).limit(1))).first() is not None:
            return 0
        table = ReviewerRecord.__table__  # type: ignore[attr-defined]
        dialect = session.get_bind().dialect.name
        now = utcnow()
        rows = [
            {
                "reviewer_id": p.reviewer_id,
                "name": p.name,
                "roles": [r.value for r in p.roles],
                "affiliations": list(p.affiliations),
                "ownership_interests": list(p.ownership_interests),
                "declared_identifiers": identifiers_json(p),
                "active": p.active,
                "created_at": now,
                "updated_at": now,
                "updated_by": SEED_ACTOR,
            }
            for p in demo_reviewers()
        ]
        await session.exec(insert_ignore(dialect, table, rows))
        # The history of exactly the rows this start inserted (another replica's are its own).
        inserted = (
            await session.exec(
                select(ReviewerRecord).where(
                    col(ReviewerRecord.created_at) == now,
                    col(ReviewerRecord.updated_by) == SEED_ACTOR,
                )
            )
        ).all()
        session.add_all([registry_change(record, "added") for record in inserted])
        await uow.commit()
    log.info("demo reviewers seeded", count=len(rows))
    return len(rows)


async def _desk_problem(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DeskProblem)
    return problem_response(
        exc.status,
        exc.title,
        type_=problem_type(exc.code),
        detail=exc.detail,
        instance=request.url.path,
        **exc.extensions,
    )


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the ASGI app; database, broker, seeding and Temporal start with its lifespan."""
    settings = settings or Settings()
    service = Service(settings, migrations=MIGRATIONS)
    service.consume(
        *consumed_topics(),
        handler=project_inbox,
        types=HANDLED_TYPES,
        description=(
            "Review tasks, decisions, reminders, escalations and cancellations, plus the "
            "application's end (approved, rejected, withdrawn): the reviewer inbox."
        ),
    )
    desk = TemporalDesk(
        settings.temporal_address,
        settings.temporal_namespace,
        decision_timeout=settings.decision_timeout,
        retry_interval=settings.temporal_retry_interval,
    )
    service.extra_checks["temporal"] = desk.health
    app = service.create_app(
        title="Review desk",
        description=DESCRIPTION,
        routers=[router, registry_router, internal_router],
    )
    app.add_exception_handler(DeskProblem, _desk_problem)
    app.state.desk = desk

    if settings.seed_demo_reviewers:
        service.on_start(lambda: seed_registry(service.uow))
    service.on_start(desk.start)
    service.on_stop(desk.stop)
    return app


def main() -> None:
    """Run the service until SIGTERM/SIGINT, configured by environment."""
    run_service(Settings, create_app)


if __name__ == "__main__":
    main()
