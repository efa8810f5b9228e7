"""The final check of a demo run: what the APIs and the audit log say once the load is over.

Every figure names the items at fault and must be empty:

- **applications lost**: submitted (the service answered 201) but not listed by the service;
- **applications duplicated**: listed twice, or listed for the run's firms without having been
  submitted by the run (a retried submission that created a second application);
- **applications stuck**: not at rest when the run ended (see :mod:`.load`);
- **units over-allocated**: a zone's held + allocated above its capacity, or an application
  given more units than it asked for;
- **tranches paid twice**: more than one paid rail payment, or more than one ledger payout, for
  one tranche of one award;
- **budgets exceeded**: a budget whose free, reserved or paid part is negative, or whose parts do
  not add up to what was funded;
- **log records duplicated**: one event id logged twice on one topic, or a leaf index missing
  from the gap-free sequence;
- **log records missing**: an application whose state rebuilt from the log (status, tranches
  paid) differs from what the services say, after the log had time to catch up;
- **dead letters**: records the log holds from a ``.dlq`` topic (a transient error must never
  dead-letter; nothing in this run is invalid).
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from services.cli.demo.api import Api, PartUnavailable
from services.cli.demo.load import LoadRun, Tracked, demo_content

#: Leaves per request of the audit log's entries.
_PAGE = 1000
#: Any instant: the units an application asks for do not depend on when it was written.
_EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass
class Report:
    """The figures of the final check (each a list of what is at fault) and some facts."""

    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    stuck: list[str] = field(default_factory=list)
    over_allocated: list[str] = field(default_factory=list)
    paid_twice: list[str] = field(default_factory=list)
    budgets_exceeded: list[str] = field(default_factory=list)
    log_missing: list[str] = field(default_factory=list)
    log_duplicated: list[str] = field(default_factory=list)
    dead_letters: list[str] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)

    def figures(self) -> dict[str, list[str]]:
        """Figure name -> the items at fault."""
        return {
            "applications lost": self.lost,
            "applications duplicated": self.duplicated,
            "applications stuck": self.stuck,
            "units over-allocated": self.over_allocated,
            "tranches paid twice": self.paid_twice,
            "budgets exceeded": self.budgets_exceeded,
            "log records missing": self.log_missing,
            "log records duplicated": self.log_duplicated,
            "dead letters": self.dead_letters,
        }

    @property
    def clean(self) -> bool:
        """Every figure is 0."""
        return not any(self.figures().values())


async def check(api: Api, run: LoadRun, *, settle_timeout: float = 120.0) -> Report:
    """Read the APIs and the audit log; the report of the run."""
    report = Report(stuck=list(run.stuck))
    await _log(api, run, report, settle_timeout)  # first: it waits for the views to settle
    await _applications(api, run, report)
    await _zones(api, run, report)
    await _money(api, run, report)
    return report


async def _listing(api: Api) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 100, **({"cursor": cursor} if cursor else {})}
        page = await api.get_json(
            "applications", "/v1/applications", headers=api.tokens.admin(), params=params
        )
        items += page["items"]
        cursor = page.get("next_cursor")
        if not cursor:
            return items


async def _applications(api: Api, run: LoadRun, report: Report) -> None:
    ours = f"DEMO-{run.run_id}-"
    listed = [item for item in await _listing(api) if item["firm_id"].startswith(ours)]
    counts = Counter(item["id"] for item in listed)
    submitted = {a.application_id for a in run.tracked if a.application_id}
    report.lost = sorted(submitted - set(counts))
    report.duplicated = sorted({i for i, n in counts.items() if n > 1} | (set(counts) - submitted))
    never = [f"#{a.number}" for a in run.tracked if a.application_id is None]
    report.lost += never
    report.facts["applications listed"] = len(counts)


async def _zones(api: Api, run: LoadRun, report: Report) -> None:
    body = await api.get_json("zones", "/v1/zones", headers=api.tokens.admin())
    for zone in body["zones"]:
        for line in zone["occupancy"]:
            if line["held"] + line["allocated"] > line["capacity"] or line["free"] < 0:
                report.over_allocated.append(
                    f"{zone['id']}/{line['unit_type']}: held {line['held']} + allocated "
                    f"{line['allocated']} > capacity {line['capacity']}"
                )
    for app in run.tracked:
        award = (app.view or {}).get("award") or {}
        asked = {r["unit_type"]: r["quantity"] for r in _asked(app)}
        given = Counter[str]()
        for units in award.get("allocated") or []:
            given[units["unit_type"]] += units["quantity"]
        for unit_type, quantity in given.items():
            if quantity > asked.get(unit_type, 0):
                report.over_allocated.append(
                    f"{app.application_id}: {quantity} {unit_type} allocated, "
                    f"{asked.get(unit_type, 0)} asked"
                )


def _asked(app: Tracked) -> list[dict[str, Any]]:
    content = demo_content(app.number, app.firm_id, _EPOCH)
    asked: list[dict[str, Any]] = content["incentives"]["zone_space"]
    return asked


async def _money(api: Api, run: LoadRun, report: Report) -> None:
    admin = api.tokens.admin()
    budgets = (await api.get_json("disbursement", "/v1/budgets", headers=admin))["budgets"]
    payouts = Counter[tuple[str, int]]()
    for budget in budgets:
        parts = {k: Decimal(budget[k]["amount"]) for k in ("funded", "free", "reserved", "paid")}
        if min(parts["free"], parts["reserved"], parts["paid"]) < 0 or (
            parts["free"] + parts["reserved"] + parts["paid"] != parts["funded"]
        ):
            report.budgets_exceeded.append(
                f"{budget['id']}: " + ", ".join(f"{k} {v}" for k, v in parts.items())
            )
        ledger = await api.get_json(
            "disbursement", f"/v1/budgets/{budget['id']}/ledger", headers=admin
        )
        for entry in ledger["entries"]:
            if entry.get("tranche") is not None and str(entry["credit"]).endswith(":paid"):
                payouts[(entry["award_id"], entry["tranche"])] += 1
    report.paid_twice += [f"ledger {a}/tranche-{t}" for (a, t), n in payouts.items() if n > 1]
    rail = await _rail_payments(api, run)
    paid = Counter(p["reference"] for p in rail if p["status"] == "paid")
    report.paid_twice += [f"rail {ref}" for ref, n in paid.items() if n > 1]
    report.facts["rail payments"] = len(rail)
    report.facts["tranches paid (ledger)"] = len(payouts)


async def _rail_payments(api: Api, run: LoadRun) -> list[dict[str, Any]]:
    since = run.started_at.isoformat()
    payments: list[dict[str, Any]] = []
    seen: set[str] = set()
    while True:
        page = await api.get_json(
            "rail", "/v1/payments", headers={}, params={"since": since, "limit": 1000}
        )
        fresh = [p for p in page["payments"] if p["id"] not in seen]
        payments += fresh
        seen.update(p["id"] for p in fresh)
        if len(page["payments"]) < 1000 or not fresh:
            return payments
        since = page["payments"][-1]["created_at"]


def _event_id(leaf_b64: str) -> tuple[str, str | None]:
    """The topic and the event id of one leaf (None when its value is not an envelope)."""
    leaf = json.loads(base64.b64decode(leaf_b64))
    try:
        value = json.loads(base64.b64decode(leaf["value"]))
    except (ValueError, TypeError):
        return leaf["topic"], None
    event_id = value.get("event_id") if isinstance(value, dict) else None
    return leaf["topic"], event_id


async def _log(api: Api, run: LoadRun, report: Report, settle_timeout: float) -> None:
    auditor = api.tokens.auditor()
    deadline = time.monotonic() + settle_timeout
    differing: list[str] = []
    apps = [a for a in run.tracked if a.application_id and a.view]
    gate = asyncio.Semaphore(16)

    async def compare(app: Tracked) -> str | None:
        async with gate:
            return await _differs(api, run, app, auditor)

    while True:
        found = await asyncio.gather(*(compare(a) for a in apps))
        differing = [d for d in found if d]
        if not differing or time.monotonic() >= deadline:
            break
        await asyncio.sleep(2.0)
    report.log_missing = sorted(differing)

    entries: list[dict[str, Any]] = []
    while True:
        page = await api.get_json(
            "audit",
            "/v1/log/entries",
            headers=auditor,
            params={"start": len(entries), "end": len(entries) + _PAGE},
        )
        entries += page["entries"]
        if len(page["entries"]) < _PAGE:
            break
    gaps = [str(i) for i, e in enumerate(entries) if e["index"] != i]
    report.log_duplicated += [f"index {i} out of sequence" for i in gaps[:20]]
    logged = Counter[tuple[str, str]]()
    for entry in entries:
        topic, event_id = _event_id(entry["leaf"])
        if topic.endswith(".dlq"):
            report.dead_letters.append(f"{topic}#{entry['index']}")
        if event_id is not None:
            logged[(topic, event_id)] += 1
    report.log_duplicated += [f"{t} {e} x{n}" for (t, e), n in logged.items() if n > 1]
    report.facts["log size"] = len(entries)


async def _differs(api: Api, run: LoadRun, app: Tracked, auditor: dict[str, str]) -> str | None:
    """How the log's state of ``app`` differs from the services' view; None when it agrees."""
    try:
        view = await run.view(app)
        response = await api.request(
            "audit", "GET", f"/v1/applications/{app.application_id}/state", headers=auditor
        )
    except PartUnavailable as exc:
        return f"{app.application_id}: {exc}"
    if response.status_code != 200:
        return f"{app.application_id}: log state {response.status_code}"
    state = response.json()
    tranches = ((view.get("award") or {}).get("tranches")) or []
    paid = sorted(t["sequence"] for t in tranches if t["state"] == "paid")
    logged_paid = sorted(((state.get("award") or {}).get("paid")) or [])
    if state["status"] != view.get("status") or paid != logged_paid:
        return (
            f"{app.application_id}: log says {state['status']} paid {logged_paid}, "
            f"services say {view.get('status')} paid {paid}"
        )
    return None
