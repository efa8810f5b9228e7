"""``incentives audit replay``: projections rebuilt from the log into scratch databases, diffed.

The log's leaves are the exact Kafka records the services consumed (topic, key, headers,
value). Replay reads them in index order, up to the gap-free head (the tree size of the
latest signed checkpoint, every index present), and hands each one to the consumers of the
services that build state from what they consume, each running as its own app on a scratch
SQLite database migrated with its own migrations, with no broker, Temporal or payment rail
reachable. So the rebuilt state comes from the services' own handlers, not from a copy:

- **review inbox**: the review desk's inbox projection (``review.events``,
  ``approvals.events``, withdrawals);
- **zone occupancy**: the zones service's command handlers (``zones.commands``) over its
  catalogue file (zones an administrator added or changed through the API are not in the log,
  and show as differences);
- **application status and timeline**: rebuilt with the audit's point-in-time state
  (``contracts.status``, the rules the applications service projects with) and the
  applications service's own reading of each event (``services.applications.domain.interpret``)
  for the timeline (compared as the event type and time of each entry): the applications
  service's records begin with a firm's HTTP request, not with an event, so there is no
  consumer to feed.

Each rebuilt projection is then read through its service's own API (in process, over ASGI)
and compared with the same API of the live service, item by item and field by field.

- **budget balances**: every movement of the disbursement ledger (a budget set or topped up,
  a reservation, a charge to another year's budget, a payment the rail settled, what a
  cancellation or a rejected payment gave back) is a ``ledger.transferred`` record, so the
  balances are summed from those records alone: per budget what was funded, what is free,
  reserved and paid (``GET /v1/budgets``), and each ledger entry as its budget's ledger lists
  it (``GET /v1/budgets/{id}/ledger``). A difference in an entry names the entry and the leaf
  that recorded it; an entry the log lacks is named by the live ledger's id.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

import httpx
from fastapi import FastAPI

from services.audit.domain.leaves import LeafFormatError, parse_leaf
from services.kit.consumer import IdempotentConsumer
from services.kit.dlq import ConsumedRecord

#: The applications service's own topic: the firm's acts, and withdrawals.
APPLICATIONS_EVENTS: Final = "applications.events"

#: How long one record may take in a scratch consumer. A record a live consumer refused is
#: refused again, and its dead letter cannot be sent (no broker): it is then left out.
RECORD_TIMEOUT: Final = 5.0

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class LoggedRecord:
    """One leaf of the log as the record it was."""

    index: int
    record: ConsumedRecord


def records_of(entries: Sequence[Mapping[str, Any]]) -> tuple[list[LoggedRecord], int]:
    """The records of ``entries`` (API entries, in index order), and how many did not parse."""
    out: list[LoggedRecord] = []
    unparsed = 0
    for entry in entries:
        try:
            leaf = parse_leaf(base64.b64decode(entry["leaf"]))
        except (LeafFormatError, ValueError):
            unparsed += 1
            continue
        out.append(
            LoggedRecord(
                int(entry["index"]),
                ConsumedRecord(
                    topic=leaf.topic,
                    partition=int(entry.get("partition", 0)),
                    offset=int(entry.get("offset", 0)),
                    key=leaf.key,
                    value=leaf.value,
                    headers=leaf.headers,
                ),
            )
        )
    return out, unparsed


# --- differences ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Difference:
    """One value that differs between the live projection and the rebuilt one."""

    item: str
    path: str
    live: Any
    rebuilt: Any


#: Marks an item or a member that one side does not have.
MISSING: Final = "(absent)"


def diff_values(item: str, live: Any, rebuilt: Any, path: str = "") -> list[Difference]:
    """Every leaf value that differs between two JSON documents, with its path."""
    if isinstance(live, dict) and isinstance(rebuilt, dict):
        out = []
        for key in dict.fromkeys([*live, *rebuilt]):
            out.extend(
                diff_values(
                    item, live.get(key, MISSING), rebuilt.get(key, MISSING), f"{path}.{key}"
                )
            )
        return out
    if isinstance(live, list) and isinstance(rebuilt, list) and len(live) == len(rebuilt):
        return [
            d
            for n, (a, b) in enumerate(zip(live, rebuilt, strict=True))
            for d in diff_values(item, a, b, f"{path}[{n}]")
        ]
    return [] if live == rebuilt else [Difference(item, path.lstrip(".") or "", live, rebuilt)]


def diff_items(live: Mapping[str, Any], rebuilt: Mapping[str, Any]) -> list[Difference]:
    """The differences between two keyed projections (an item on one side only is one)."""
    out: list[Difference] = []
    for key in sorted(set(live) | set(rebuilt)):
        if key not in rebuilt:
            out.append(Difference(key, "", "present", MISSING))
        elif key not in live:
            out.append(Difference(key, "", MISSING, "present"))
        else:
            out.extend(diff_values(key, live[key], rebuilt[key]))
    return out


@dataclass
class ProjectionReport:
    """One projection compared."""

    name: str
    items: int = 0
    records: int = 0
    left_out: list[int] = field(default_factory=list)
    differences: list[Difference] = field(default_factory=list)
    #: Why it could not be compared (the live service is unreachable, for instance).
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and not self.differences


# --- reading a service's API ---------------------------------------------------------------------


class ReadError(RuntimeError):
    """A service API that did not answer as documented."""


async def _get(client: httpx.AsyncClient, path: str, **params: Any) -> Any:
    try:
        response = await client.get(path, params=params or None)
    except httpx.HTTPError as exc:
        raise ReadError(f"{client.base_url} is unreachable: {exc}") from exc
    if response.status_code != 200:
        raise ReadError(f"GET {path} answered {response.status_code}: {response.text[:200]}")
    return response.json()


async def read_inbox(client: httpx.AsyncClient) -> dict[str, Any]:
    """Every review task, by task id (``GET /v1/inbox``, every page)."""
    tasks: dict[str, Any] = {}
    while True:
        page = await _get(client, "/v1/inbox", limit=200, offset=len(tasks))
        for item in page["items"]:
            tasks[item["task_id"]] = item
        if not page["items"] or len(tasks) >= page["total"]:
            return tasks


async def read_zones(client: httpx.AsyncClient) -> dict[str, Any]:
    """Every zone with its occupancy, by zone id (``GET /v1/zones``)."""
    return {zone["id"]: zone for zone in (await _get(client, "/v1/zones"))["zones"]}


# --- the scratch services ------------------------------------------------------------------------


@dataclass(frozen=True)
class Rebuilt:
    """A service whose state is rebuilt by feeding it records, and how to read it."""

    projection: str
    service: str
    build: Callable[[Path, str], FastAPI]
    read: Callable[[httpx.AsyncClient], Awaitable[dict[str, Any]]]


def _review(var_dir: Path, unreachable: str) -> FastAPI:
    from services.review.main import create_app
    from services.review.settings import Settings

    return create_app(
        Settings(
            var_dir=var_dir,
            kafka_bootstrap=unreachable,
            temporal_address=unreachable,
            seed_demo_reviewers=False,
        )
    )


def _zones(var_dir: Path, unreachable: str) -> FastAPI:
    from services.zones.main import create_app
    from services.zones.settings import Settings

    return create_app(Settings(var_dir=var_dir, kafka_bootstrap=unreachable))


REBUILT: Final[tuple[Rebuilt, ...]] = (
    Rebuilt("review inbox", "review", _review, read_inbox),
    Rebuilt("zone occupancy", "zones", _zones, read_zones),
)


def _unreachable() -> str:
    from services.cli.embedded import free_port

    return f"127.0.0.1:{free_port()}"


def _consumers(app: FastAPI) -> list[tuple[IdempotentConsumer, frozenset[str]]]:
    """Each consumer of the app's service with the topics it reads."""
    from services.kit.dlq import dlq_topic
    from services.kit.runtime import Service

    service: Service = app.state.service
    out = []
    for consumer, receives in zip(service.consumers, service.receives, strict=True):
        topics = receives.topics
        if receives.reads_dead_letters:
            topics = tuple(dlq_topic(t) for t in topics)
        out.append((consumer, frozenset(topics)))
    return out


@contextlib.asynccontextmanager
async def scratch_service(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """Run ``app``'s lifespan (migrations, seeding) and yield an in-process client."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://scratch") as client:
            yield client


async def feed(
    app: FastAPI, records: Sequence[LoggedRecord], progress: Progress | None = None
) -> tuple[int, list[int]]:
    """Hand every record to the consumers that read its topic, in log order.

    Returns how many records were fed and the leaf indexes left out (refused, or waiting for a
    dependency the scratch service does not have).
    """
    consumers = _consumers(app)
    wanted = [r for r in records if any(r.record.topic in topics for _, topics in consumers)]
    left_out: list[int] = []
    for done, logged in enumerate(wanted, start=1):
        for consumer, topics in consumers:
            if logged.record.topic not in topics:
                continue
            try:
                await asyncio.wait_for(consumer.process(logged.record), RECORD_TIMEOUT)
            except TimeoutError:
                left_out.append(logged.index)
        if progress is not None:
            progress(done, len(wanted))
    return len(wanted), left_out


# --- applications --------------------------------------------------------------------------------


def _timeline_entry(type_: str, at: datetime) -> str:
    return f"{type_} at {at.astimezone(UTC).isoformat()}"


def rebuilt_applications(records: Sequence[LoggedRecord], tree_size: int) -> dict[str, Any]:
    """Per application of the log: its status, revision and timeline, rebuilt from the log."""
    from services.applications.domain import interpret
    from services.audit.domain.leaves import leaf_bytes
    from services.audit.domain.state import NothingLogged, logged_events, state_as_of

    leaves = [
        (
            r.index,
            leaf_bytes(r.record.topic, r.record.key, r.record.headers, r.record.value),
        )
        for r in records
    ]
    events, _undecodable = logged_events(leaves)
    by_application: dict[str, list[Any]] = {}
    for event in events:
        by_application.setdefault(event.envelope.subject, []).append(event)
    now = datetime.now(UTC)
    out: dict[str, Any] = {}
    for application_id, mine in by_application.items():
        if not any(e.envelope.type == "application.submitted" for e in mine):
            continue
        try:
            state = state_as_of(application_id, mine, now, tree_size=tree_size)
        except NothingLogged:
            continue
        out[application_id] = {
            "status": state.status,
            "revision": state.revision,
            # The firm's own acts (on applications.events) are put on the timeline by the
            # request that made them; every other event, by the projection if it means
            # something to the firm's view.
            "timeline": sorted(
                _timeline_entry(e.envelope.type, e.envelope.occurred_at)
                for e in mine
                if e.topic == APPLICATIONS_EVENTS or interpret(e.envelope) is not None
            ),
        }
    return out


async def live_applications(
    client: httpx.AsyncClient, application_ids: Sequence[str]
) -> dict[str, Any]:
    """The same view of each application from the live applications API (``GET`` by id)."""
    from contracts.catalog import MESSAGE_TYPES

    out: dict[str, Any] = {}
    for application_id in application_ids:
        try:
            body = await _get(client, f"/v1/applications/{application_id}")
        except ReadError as exc:
            if " answered 404" in str(exc):
                continue
            raise
        out[application_id] = {
            "status": body["status"],
            "revision": body["revision"],
            "timeline": sorted(
                _timeline_entry(entry["event"], datetime.fromisoformat(entry["at"]))
                for entry in body["timeline"]
                if entry["event"] in MESSAGE_TYPES
            ),
        }
    return out


# --- budget balances ----------------------------------------------------------------------------

#: The disbursement ledger's movements, one record each.
LEDGER_TRANSFERRED: Final = "ledger.transferred"
DISBURSEMENT_EVENTS: Final = "disbursement.events"
#: A budget's balances as ``GET /v1/budgets`` shows them.
BUDGET_FIELDS: Final = ("funded", "free", "reserved", "paid")


def _entry_item(entry_id: int) -> str:
    return f"entry {entry_id}"


@dataclass
class RebuiltLedger:
    """Budget balances and ledger entries summed from the log's ``ledger.transferred`` records."""

    #: Budget id -> its balances; ``entry <id>`` -> the entry.
    items: dict[str, Any] = field(default_factory=dict)
    #: ``entry <id>`` -> the leaf index that recorded it.
    leaves: dict[str, int] = field(default_factory=dict)
    records: int = 0
    #: Leaves repeating an entry already counted (counted once).
    repeated: list[int] = field(default_factory=list)


def rebuilt_ledger(records: Sequence[LoggedRecord]) -> RebuiltLedger:
    """The ledger rebuilt from ``records``: each entry once, balances summed per account.

    Movements are sums, so the order the log holds them in (one application's records are
    ordered, different keys are not) does not matter. An award belongs to the budget of its
    latest reservation, as the service charges it.
    """
    from contracts.catalog import decode
    from contracts.errors import DecodeError
    from contracts.v1.disbursement import LedgerCause, LedgerTransferred
    from services.disbursement.commands import as_balance, as_money
    from services.disbursement.domain import AccountKind, award_account, budget_account

    out = RebuiltLedger()
    movements: dict[int, LedgerTransferred] = {}
    for logged in records:
        if logged.record.topic != DISBURSEMENT_EVENTS:
            continue
        try:
            envelope = decode(logged.record.value)
        except DecodeError:
            continue
        if envelope.type != LEDGER_TRANSFERRED:
            continue
        out.records += 1
        movement: LedgerTransferred = envelope.payload
        if movement.entry_id in movements:
            out.repeated.append(logged.index)
            continue
        movements[movement.entry_id] = movement
        out.leaves[_entry_item(movement.entry_id)] = logged.index
    balances: dict[str, Decimal] = {}
    currencies: dict[str, str] = {}
    award_budget: dict[str, str] = {}
    for entry_id in sorted(movements):
        m = movements[entry_id]
        balances[m.debit] = balances.get(m.debit, Decimal(0)) - m.amount.amount
        balances[m.credit] = balances.get(m.credit, Decimal(0)) + m.amount.amount
        currencies.setdefault(m.budget_id, m.amount.currency)
        if m.cause is LedgerCause.RESERVE and m.award_id is not None:
            award_budget[m.award_id] = m.budget_id
        out.items[_entry_item(entry_id)] = {
            "budget": m.budget_id,
            "cause": m.cause.value,
            "debit": m.debit,
            "credit": m.credit,
            "amount": as_money(m.amount.amount, m.amount.currency).model_dump(mode="json"),
            "award_id": m.award_id,
            "tranche": m.sequence,
        }

    def held(account: str) -> Decimal:
        return balances.get(account, Decimal(0))

    for budget_id, currency in currencies.items():
        awards = [a for a, b in award_budget.items() if b == budget_id]
        amounts = {
            "funded": -held(budget_account(budget_id, AccountKind.FUNDING)),
            "free": held(budget_account(budget_id, AccountKind.AVAILABLE)),
            "reserved": sum(
                (held(award_account(a, AccountKind.RESERVED)) for a in awards), Decimal(0)
            ),
            "paid": sum((held(award_account(a, AccountKind.PAID)) for a in awards), Decimal(0)),
        }
        out.items[budget_id] = {
            name: as_balance(amount, currency).model_dump(mode="json")
            if amount >= 0
            else {"amount": str(amount), "currency": currency}
            for name, amount in amounts.items()
        }
    return out


async def live_ledger(client: httpx.AsyncClient) -> dict[str, Any]:
    """The same view from the live disbursement API: every budget and each of its entries."""
    out: dict[str, Any] = {}
    for budget in (await _get(client, "/v1/budgets"))["budgets"]:
        out[budget["id"]] = {name: budget[name] for name in BUDGET_FIELDS}
        ledger = await _get(client, f"/v1/budgets/{budget['id']}/ledger")
        for entry in ledger["entries"]:
            out[_entry_item(entry["id"])] = {
                "budget": budget["id"],
                "cause": entry["cause"],
                "debit": entry["debit"],
                "credit": entry["credit"],
                "amount": entry["amount"],
                "award_id": entry["award_id"],
                "tranche": entry["tranche"],
            }
    return out


def _named(
    differences: list[Difference], live: Mapping[str, Any], rebuilt: RebuiltLedger
) -> list[Difference]:
    """The differences with each entry named by its leaf, and an entry the log lacks by what
    the live ledger says it was."""
    out = []
    for d in differences:
        item, live_value = d.item, d.live
        if item in rebuilt.leaves:
            item = f"{item} (leaf {rebuilt.leaves[item]})"
        elif item.startswith("entry ") and d.rebuilt == MISSING and item in live:
            e = live[item]
            live_value = (
                f"{e['cause']} of {e['amount']['amount']} {e['amount']['currency']}"
                f" from {e['debit']} to {e['credit']}"
            )
        out.append(Difference(item, d.path, live_value, d.rebuilt))
    return out


async def compare_ledger(
    records: Sequence[LoggedRecord], client: httpx.AsyncClient
) -> ProjectionReport:
    """Budget balances and ledger entries rebuilt from the log, diffed with the live service."""
    report = ProjectionReport("budget balances")
    rebuilt = rebuilt_ledger(records)
    report.records, report.left_out = rebuilt.records, rebuilt.repeated
    try:
        live_items = await live_ledger(client)
    except ReadError as exc:
        report.error = f"the live disbursement service: {exc}"
        return report
    report.items = len(set(live_items) | set(rebuilt.items))
    report.differences = _named(diff_items(live_items, rebuilt.items), live_items, rebuilt)
    return report


# --- the whole replay ----------------------------------------------------------------------------


@dataclass(frozen=True)
class LiveServices:
    """Base URLs of the live services, the headers to read them with, and those to read the
    scratch services with (a token their own key signed)."""

    urls: Mapping[str, str]
    headers: Mapping[str, str]
    scratch_headers: Mapping[str, str]


async def replay(
    records: Sequence[LoggedRecord],
    tree_size: int,
    live: LiveServices,
    *,
    scratch_dir: Path | None = None,
    only: Sequence[str] = (),
    progress: Callable[[str], Progress] | None = None,
) -> list[ProjectionReport]:
    """Rebuild every projection (or those named in ``only``) and diff it with the live one."""
    reports: list[ProjectionReport] = []
    with contextlib.ExitStack() as stack:
        root = scratch_dir or Path(stack.enter_context(tempfile.TemporaryDirectory()))
        for rebuilt in REBUILT:
            if only and rebuilt.service not in only:
                continue
            report = ProjectionReport(rebuilt.projection)
            reports.append(report)
            app = rebuilt.build(root / rebuilt.service, _unreachable())
            async with (
                scratch_service(app) as scratch,
                httpx.AsyncClient(
                    base_url=live.urls[rebuilt.service], headers=dict(live.headers), timeout=30
                ) as remote,
            ):
                bar = progress(rebuilt.projection) if progress else None
                report.records, report.left_out = await feed(app, records, bar)
                rebuilt_items = await rebuilt.read(_with_headers(scratch, live.scratch_headers))
                try:
                    live_items = await rebuilt.read(remote)
                except ReadError as exc:
                    report.error = f"the live {rebuilt.service} service: {exc}"
                    continue
                report.items = len(set(live_items) | set(rebuilt_items))
                report.differences = diff_items(live_items, rebuilt_items)
        if not only or "applications" in only:
            report = ProjectionReport("application status and timeline")
            reports.append(report)
            mine = rebuilt_applications(records, tree_size)
            report.records = len(records)
            async with httpx.AsyncClient(
                base_url=live.urls["applications"], headers=dict(live.headers), timeout=30
            ) as remote:
                try:
                    live_items = await live_applications(remote, sorted(mine))
                except ReadError as exc:
                    report.error = f"the live applications service: {exc}"
                else:
                    report.items = len(mine)
                    report.differences = diff_items(live_items, mine)
        if not only or "disbursement" in only:
            async with httpx.AsyncClient(
                base_url=live.urls["disbursement"], headers=dict(live.headers), timeout=30
            ) as remote:
                reports.append(await compare_ledger(records, remote))
    return reports


def _with_headers(client: httpx.AsyncClient, headers: Mapping[str, str]) -> httpx.AsyncClient:
    client.headers.update(headers)
    return client


#: The projections ``--only`` can name.
SERVICES: Final = (*(r.service for r in REBUILT), "applications", "disbursement")
