"""``incentives status --metrics``: the few figures an operator looks at first.

Every service's (and the worker's) ``/metrics`` is scraped concurrently and parsed with the
Prometheus client's parser. Per part: HTTP requests and how many answered 5xx, consumer lag,
the outbox backlog and the dead letters held on the ``.dlq`` twins it writes to. For the
platform: workflow runs, review decisions, SLA escalations, payouts and the audit log.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import httpx
from rich.table import Table

from services.kit.metrics import Samples
from services.kit.metrics import parse_exposition as parse
from services.kit.metrics import sample_total as total


def _server_errors(samples: Samples) -> float:
    return sum(
        v
        for (n, ls), v in samples.items()
        if n == "http_requests_total" and dict(ls).get("status", "").startswith("5")
    )


@dataclass(frozen=True)
class Scrape:
    """One part's exposition, or why there is none."""

    part: str
    url: str
    samples: Samples | None
    error: str | None = None


async def scrape_all(urls: Mapping[str, str], timeout_s: float = 5.0) -> list[Scrape]:
    """Scrape every ``part -> /metrics URL`` concurrently."""

    async def one(client: httpx.AsyncClient, part: str, url: str) -> Scrape:
        try:
            response = await client.get(url)
            response.raise_for_status()
            return Scrape(part, url, parse(response.text))
        except (httpx.HTTPError, ValueError) as exc:
            return Scrape(part, url, None, f"{type(exc).__name__}: {exc}")

    async with httpx.AsyncClient(timeout=timeout_s) as client:
        return list(await asyncio.gather(*(one(client, p, u) for p, u in urls.items())))


def _figure(value: float) -> str:
    return f"{value:.0f}" if value == int(value) else f"{value:.2f}"


def parts_table(scrapes: Iterable[Scrape]) -> Table:
    """Per part: requests, 5xx, consumer lag, outbox backlog, dead letters held."""
    table = Table(title="Key metrics per part")
    for column in (
        "part",
        "HTTP requests",
        "5xx",
        "consumer lag",
        "outbox backlog",
        "dead letters",
    ):
        table.add_column(column)
    for scrape in scrapes:
        if scrape.samples is None:
            table.add_row(scrape.part, f"[red]no metrics ({scrape.error})", "", "", "", "")
            continue
        s = scrape.samples
        table.add_row(
            scrape.part,
            _figure(total(s, "http_requests_total")),
            _figure(_server_errors(s)),
            _figure(total(s, "incentives_consumer_lag")),
            _figure(total(s, "incentives_outbox_backlog")),
            _figure(total(s, "incentives_dlq_records")),
        )
    return table


def platform_table(scrapes: Iterable[Scrape]) -> Table:
    """Workflow runs, decisions, escalations, payouts and the audit log, from whoever has them."""
    by_part = {s.part: s.samples for s in scrapes if s.samples is not None}
    worker = by_part.get("worker", {})
    disbursement = by_part.get("disbursement", {})
    audit = by_part.get("audit", {})
    rows = [
        ("workflows started", total(worker, "incentives_workflows_started_total")),
        ("workflows completed", total(worker, "incentives_workflows_completed_total")),
        ("workflows failed", total(worker, "incentives_workflows_failed_total")),
        ("review decisions", total(worker, "incentives_review_decisions_total")),
        ("SLA escalations", total(worker, "incentives_sla_escalations_total")),
        ("payouts paid", total(disbursement, "incentives_payouts", outcome="paid")),
        (
            "payouts open (pending, unknown)",
            total(disbursement, "incentives_payouts", outcome="pending")
            + total(disbursement, "incentives_payouts", outcome="unknown"),
        ),
        ("audit log leaves", total(audit, "incentives_audit_log_leaves")),
        ("audit checkpoint age (s)", total(audit, "incentives_audit_checkpoint_age_seconds")),
    ]
    table = Table(title="Platform")
    table.add_column("figure")
    table.add_column("value")
    for name, value in rows:
        table.add_row(name, _figure(value))
    return table
