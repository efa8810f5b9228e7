"""``incentives audit replay``: projections rebuilt from the log match the live ones, or differ.

The live applications, review and zones services run under uvicorn on their SQLite defaults,
with no broker (their consumers are handed the records directly, as the broker would); the
audit API serves a log its own writer filled with exactly those records. A firm submits over
HTTP; the submission, an eligibility decision, review tasks and a decision, and zone
commands reach both the services and the log. Then the log is replayed into scratch
databases and diffed with the live services. A record a live service saw but the log did
not (or the other way round) shows as a difference, named.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from fastapi import FastAPI
from typer.testing import CliRunner, Result

from contracts import catalog
from contracts.envelope import Actor, ActorKind, Envelope
from contracts.money import Money
from services.applications.main import create_app as create_applications
from services.applications.settings import Settings as ApplicationsSettings
from services.audit.domain.checkpoint import Signer
from services.audit.keys import key_path
from services.audit.main import create_app as create_audit
from services.audit.settings import Settings as AuditSettings
from services.audit.store import LogWriter
from services.cli.main import app as cli
from services.cli.replay import LoggedRecord, feed
from services.disbursement.main import create_app as create_disbursement
from services.disbursement.settings import Settings as DisbursementSettings
from services.kit.db import create_engine
from services.review.main import create_app as create_desk
from services.review.settings import Settings as DeskSettings
from services.zones.main import create_app as create_zones
from services.zones.settings import Settings as ZonesSettings
from tests.applications.helpers import content, event
from tests.inprocess import in_process_settings, record_of
from tests.review.helpers import auth
from tests.support import free_port, serving

FIRM = auth("firm", "alice@acme.example", firm="ACME")
ADMIN = auth("admin", "admin@gaip.example")
NOVAK = "rev.novak@gaip.example"
MEYER = "rev.meyer@gaip.example"


@dataclass
class Live:
    apps: dict[str, FastAPI]
    urls: dict[str, str]
    audit_url: str
    writer: LogWriter
    var_dir: Path

    async def both(self, envelopes: list[Envelope[Any]]) -> None:
        """The records reach the live services and the log."""
        records = [record_of(e, offset=n) for n, e in enumerate(envelopes)]
        await self.services(envelopes)
        await self.writer.append(records)

    async def services(self, envelopes: list[Envelope[Any]]) -> None:
        logged = [LoggedRecord(n, record_of(e, offset=n)) for n, e in enumerate(envelopes)]
        for app in self.apps.values():
            _count, left_out = await feed(app, logged)
            assert left_out == []

    async def replay(self, *args: str) -> Result:
        argv = ["audit", "--url", self.audit_url, "replay"]
        for name, url in self.urls.items():
            argv += [f"--{name}-url", url]
        return await asyncio.to_thread(CliRunner().invoke, cli, [*argv, *args])


@asynccontextmanager
async def live_platform(tmp_path: Path) -> AsyncIterator[Live]:
    builders: dict[str, Callable[[], FastAPI]] = {
        "applications": lambda: create_applications(
            in_process_settings(ApplicationsSettings, tmp_path / "applications")
        ),
        "review": lambda: create_desk(
            in_process_settings(DeskSettings, tmp_path / "review", seed_demo_reviewers=False)
        ),
        "zones": lambda: create_zones(in_process_settings(ZonesSettings, tmp_path / "zones")),
        "disbursement": lambda: create_disbursement(
            in_process_settings(
                DisbursementSettings,
                tmp_path / "disbursement",
                rail_url=f"http://127.0.0.1:{free_port()}",
            )
        ),
    }
    async with AsyncExitStack() as stack:
        apps: dict[str, FastAPI] = {}
        urls: dict[str, str] = {}
        for name, build in builders.items():
            app = build()
            port = app.state.service.settings.port
            await stack.enter_async_context(serving(app, port))
            apps[name], urls[name] = app, f"http://127.0.0.1:{port}"
        audit_dir = tmp_path / "audit"
        audit_dir.mkdir()
        url = f"sqlite+aiosqlite:///{audit_dir / 'audit.db'}"
        port = free_port()
        audit = create_audit(
            AuditSettings(
                kafka_bootstrap=f"127.0.0.1:{free_port()}",
                database_url=url,
                port=port,
                var_dir=audit_dir,
            )
        )
        await stack.enter_async_context(serving(audit, port))
        engine = create_engine(url)
        stack.push_async_callback(engine.dispose)
        signer = Signer.from_text(key_path(AuditSettings(var_dir=audit_dir)).read_text())
        writer = LogWriter(engine, signer)
        await writer.load()
        yield Live(apps, urls, f"http://127.0.0.1:{port}", writer, tmp_path)


async def outbox(app: FastAPI) -> list[Envelope[Any]]:
    async with app.state.service.engine.connect() as conn:
        rows = await conn.execute(sa.text("SELECT value FROM outbox ORDER BY id"))
        return [catalog.decode(r[0] if isinstance(r[0], bytes) else r[0].encode()) for r in rows]


async def submit(client: httpx.AsyncClient) -> str:
    response = await client.post(
        "/v1/applications/submissions",
        json=content(),
        headers={**FIRM, "Idempotency-Key": str(uuid.uuid4())},
    )
    assert response.status_code == 201, response.text
    application_id: str = response.json()["id"]
    return application_id


def journey(application_id: str) -> list[Envelope[Any]]:
    """What the other services said about the application after its submission."""
    reviewer = Actor(kind=ActorKind.REVIEWER, id=NOVAK)
    return [
        event("eligibility.assessed", application_id, application_revision=1),
        event(
            "review.task_assigned", application_id, task_id=f"{application_id}-t1",
            reviewer_id=NOVAK, stage="technical",
        ),
        event(
            "review.task_assigned", application_id, task_id=f"{application_id}-t2",
            reviewer_id=MEYER, stage="security",
        ),
        event(
            "review.decision_recorded", application_id, actor=reviewer,
            task_id=f"{application_id}-t1", reviewer_id=NOVAK, stage="technical",
        ),
        event("zone.hold", application_id),
    ]  # fmt: skip


def flat(result: Result) -> str:
    return " ".join(result.output.split())


async def test_replayed_projections_match_the_live_ones_until_one_differs(
    tmp_path: Path,
) -> None:
    async with live_platform(tmp_path) as live:
        async with httpx.AsyncClient(base_url=live.urls["applications"]) as firm:
            application_id = await submit(firm)
        submitted = await outbox(live.apps["applications"])
        assert [e.type for e in submitted] == ["application.submitted"]
        await live.writer.append([record_of(e) for e in submitted])
        await live.both(journey(application_id))

        result = await live.replay()
        assert result.exit_code == 0, result.output
        assert "OK every rebuilt projection matches the live one" in flat(result)
        for name in ("review inbox", "zone occupancy", "application status and timeline"):
            assert name in result.output

        # The live services heard of a cancellation the log never recorded: the desk's task
        # and the application's timeline differ.
        await live.services(
            [
                event(
                    "review.task_cancelled",
                    application_id,
                    task_id=f"{application_id}-t2",
                    stage="security",
                    reviewer_id=MEYER,
                )
            ]
        )
        result = await live.replay()
        assert result.exit_code == 1, result.output
        diffs = [line for line in result.output.splitlines() if line.startswith("DIFF")]
        assert diffs, result.output
        assert {line.split(":")[0] for line in diffs} == {
            "DIFF review inbox",
            "DIFF application status and timeline",
        }, diffs
        assert (
            f"DIFF review inbox: {application_id}-t2 status: live 'cancelled', rebuilt 'open'"
            in diffs
        )
        [timeline] = [line for line in diffs if "timeline" in line]
        assert f"{application_id} timeline: live [" in timeline
        assert "review.task_cancelled at" in timeline.split("rebuilt")[0]
        assert "review.task_cancelled at" not in timeline.split("rebuilt")[1]

        # And a record only in the log: the zone held in the rebuilt occupancy only.
        await live.writer.append(
            [record_of(event("zone.hold", application_id, allocation_id="a2"))]
        )
        result = await live.replay("--only", "zones")
        assert result.exit_code == 1, result.output
        diffs = [line for line in result.output.splitlines() if line.startswith("DIFF")]
        assert diffs, result.output
        assert all(line.startswith("DIFF zone occupancy: ") for line in diffs), diffs
        assert "review inbox" not in result.output


async def test_replayed_budget_balances_match_the_live_ledger_until_a_record_is_missing_or_changed(
    tmp_path: Path,
) -> None:
    async with live_platform(tmp_path) as live:
        disbursement = live.apps["disbursement"]
        async with httpx.AsyncClient(base_url=live.urls["disbursement"], headers=ADMIN) as admin:
            response = await admin.post(
                "/v1/budgets",
                json={
                    "incentive_type": "grant",
                    "fiscal_year": 2027,
                    "amount": {"amount": "1000000.00", "currency": "EUR"},
                },
            )
            assert response.status_code == 201, response.text
            await live.services(
                [event("award.open", "app_1", award_id="award_app_1", budget_id="grant-2027")]
            )
            staged = await outbox(disbursement)
            assert [e.type for e in staged] == [
                "ledger.transferred",
                "ledger.transferred",
                "award.opened",
            ]
            await live.writer.append([record_of(e) for e in staged])

            result = await live.replay("--only", "disbursement")
            assert result.exit_code == 0, result.output
            assert "budget balances" in result.output
            assert "OK every rebuilt projection matches the live one" in flat(result)

            # A top-up the live ledger booked and the log never recorded: named by its entry.
            response = await admin.post(
                "/v1/budgets/grant-2027/top-ups",
                json={"amount": {"amount": "500.00", "currency": "EUR"}},
            )
            assert response.status_code == 200, response.text
        [top_up] = (await outbox(disbursement))[len(staged) :]
        entry = top_up.payload.entry_id
        result = await live.replay("--only", "disbursement")
        assert result.exit_code == 1, result.output
        diffs = [line for line in result.output.splitlines() if line.startswith("DIFF")]
        assert (
            f"DIFF budget balances: entry {entry}: live 'top_up of 500.00 EUR from"
            " budget:grant-2027:funding to budget:grant-2027:available', rebuilt '(absent)'"
            in diffs
        ), diffs
        assert (
            "DIFF budget balances: grant-2027 funded.amount: live '1000500.00', "
            "rebuilt '1000000.00'" in diffs
        ), diffs

        # The log records it, changed: the entry and its leaf are named.
        changed = top_up.model_copy(
            update={
                "payload": top_up.payload.model_copy(
                    update={"amount": Money.of(Decimal("5000.00"), "EUR")}
                )
            }
        )
        await live.writer.append([record_of(changed)])
        leaf = live.writer.size - 1
        result = await live.replay("--only", "disbursement")
        assert result.exit_code == 1, result.output
        diffs = [line for line in result.output.splitlines() if line.startswith("DIFF")]
        assert (
            f"DIFF budget balances: entry {entry} (leaf {leaf}) amount.amount: "
            "live '500.00', rebuilt '5000.00'" in diffs
        ), diffs
        assert (
            "DIFF budget balances: grant-2027 free.amount: live '750500.00', "
            "rebuilt '755000.00'" in diffs
        ), diffs


async def test_replay_refuses_what_it_cannot_compare(tmp_path: Path) -> None:
    async with live_platform(tmp_path) as live:
        live.urls["review"] = f"http://127.0.0.1:{free_port()}"
        result = await live.replay("--only", "review")
        assert result.exit_code == 2, result.output
        assert "the live review service" in flat(result)
        assert (await live.replay("--only", "budgets")).exit_code == 2
