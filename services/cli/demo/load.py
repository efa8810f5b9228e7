"""``incentives demo load``: synthetic firms and applications through the public HTTP APIs.

- An admin funds this year's grant budget for every application of the run.
- Each synthetic firm (one per ten applications) submits complete applications, each with its
  own ``Idempotency-Key`` kept across retries, so a retry after a lost answer never submits twice.
- With ``auto_review``, every open task in the desk is decided (approve) by the reviewer it is
  assigned to, with that reviewer's own token, as the demo reviewers would.
- With ``accept_offers``, each firm accepts its offer, then reports each milestone once the
  tranche before it is paid; the reviewers verify it through the desk and the next tranche is
  paid, until the award completes.

The run ends when every application rests (closed, completed, waiting for a person the run
does not play, or past the ``until`` stage when one is given), or when nothing has moved for
``stall_timeout`` seconds: what has not come to rest by then is stuck. The summary counts
applications per end state, the p50/p99 time from submission to each stage and the time from
the run's first submission to the last application reaching it, read from each application's
timeline, and the driver's own CPU seconds.

The firm's view of an application (award, tranches, milestones) is read again only when the
listing says the application changed (its ``updated_at``), not on every poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import itertools
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from contracts.status import CLOSED, Status
from contracts.v1.applications import CONTENT_EXAMPLE
from contracts.v1.desk import DecisionRefusal
from services.cli.demo.api import Api, PartUnavailable

#: The grant each synthetic application asks for, and its currency.
GRANT = Decimal("10000.00")
CURRENCY = "EUR"
#: Applications per synthetic firm.
PER_FIRM = 10
#: Stages in journey order, as statuses of the firm's view (plus the award's tranches).
STAGES: tuple[str, ...] = (
    Status.ELIGIBLE.value,
    Status.UNDER_REVIEW.value,
    Status.APPROVED.value,
    Status.AWARD_OPENED.value,
    Status.OFFERED.value,
    Status.OFFER_ACCEPTED.value,
    "tranche 1 paid",
    Status.COMPLETED.value,
)
#: Stages a run may stop at (``until``): the statuses among :data:`STAGES`.
UNTIL_STAGES: tuple[str, ...] = tuple(s for s in STAGES if s in {m.value for m in Status})
#: Where an application waits for the firm or for nobody.
_ENDED = frozenset(s.value for s in CLOSED) | {Status.COMPLETED.value}
#: Where it waits for a reviewer, when the run does not review.
_AWAITS_REVIEW = frozenset(
    {Status.ELIGIBLE.value, Status.UNDER_REVIEW.value, Status.INFORMATION_REQUESTED.value}
)
#: Refusals of a decision that only say it came late (the stage or the application moved on).
_LATE_ANSWERS: frozenset[tuple[int, str]] = frozenset(
    {
        (409, DecisionRefusal.APPLICATION_CLOSED.value),
        (409, DecisionRefusal.DUPLICATE_DECISION.value),
        (409, DecisionRefusal.STAGE_NOT_OPEN.value),
        # A vote after the quorum closed the run: the desk should answer 409
        # application_closed here too.
        (404, "workflow_not_found"),
    }
)
#: Concurrent requests of one kind (submissions, decisions, views).
CONCURRENCY = 8


def demo_content(number: int, firm_id: str, now: datetime) -> dict[str, Any]:
    """The contract's example application, as synthetic firm ``firm_id``'s ``number``-th.

    It asks for one office seat and a small grant, so that a thousand fit the catalogue's
    zones and one budget; its attestations are dated a week before ``now``, inside every rule
    set's window.
    """
    body: dict[str, Any] = copy.deepcopy(dict(CONTENT_EXAMPLE))
    signed = (now - timedelta(days=7)).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    for name in ("data_protection_attestation", "responsible_ai_attestation"):
        body["commitments"][name] = {**body["commitments"][name], "attested_at": signed}
    body["firm"]["legal_name"] = f"Demo Firm {firm_id}"
    body["proposal"]["title"] = f"Demo proposal {number}"
    body["incentives"]["grant"]["amount"] = {"amount": str(GRANT), "currency": CURRENCY}
    body["incentives"]["zone_space"] = [{"unit_type": "office_seat", "quantity": 1}]
    return body


def _key(*parts: object) -> str:
    """A deterministic idempotency key: the same act always sends the same key."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "/".join(str(p) for p in parts)))


@dataclass
class Tracked:
    """One synthetic application and what the run knows of it."""

    number: int
    firm_id: str
    application_id: str | None = None
    status: str = "unsubmitted"
    #: The firm's last full view of it (award, tranches, milestones, timeline).
    view: dict[str, Any] | None = None
    #: ``updated_at`` as the admin's listing last gave it.
    listed_at: str | None = None
    accepted_at: float = 0.0
    reported: set[int] = field(default_factory=set)

    def progress(self) -> tuple[str, int, int]:
        """What changes while the application moves: status, tranches paid, milestones."""
        tranches = ((self.view or {}).get("award") or {}).get("tranches") or []
        return self.status, sum(t["state"] == "paid" for t in tranches), len(self.reported)

    def view_is_stale(self) -> bool:
        """Whether the listing shows a change the last view does not hold."""
        if self.view is None:
            return True
        return self.listed_at is not None and self.view.get("updated_at") != self.listed_at


@dataclass
class Summary:
    """What a run did and how long each stage took."""

    applications: int
    seconds: float
    end_states: Counter[str]
    #: Stage -> (count reached, p50 s, p99 s) from submission.
    stages: dict[str, tuple[int, float, float]]
    #: Stage -> seconds from the run's first submission to the last application reaching it.
    spans: dict[str, float]
    decisions: int
    late_decisions: int
    offers_accepted: int
    milestones_reported: int
    stuck: list[str]
    retries: dict[str, int]
    errors: list[str]
    #: CPU seconds (user + system) of the driver's own process over the run.
    cpu_s: float = 0.0

    def table_rows(self) -> list[tuple[str, str]]:
        """The summary as (figure, value) rows."""
        rows = [
            ("applications", str(self.applications)),
            ("seconds", f"{self.seconds:.1f}"),
            ("applications per second", f"{self.applications / max(self.seconds, 1e-9):.2f}"),
        ]
        rows += [(f"end state: {state}", str(n)) for state, n in sorted(self.end_states.items())]
        rows += [
            (
                f"to {stage} (n={n})",
                f"p50 {p50:.1f} s, p99 {p99:.1f} s, last {self.spans.get(stage, 0.0):.1f} s",
            )
            for stage, (n, p50, p99) in self.stages.items()
        ]
        rows += [
            ("decisions", f"{self.decisions} ({self.late_decisions} late)"),
            ("offers accepted", str(self.offers_accepted)),
            ("milestones reported", str(self.milestones_reported)),
            ("stuck", str(len(self.stuck))),
            ("requests retried", ", ".join(f"{k} {v}" for k, v in self.retries.items() if v)),
            ("driver CPU", f"{self.cpu_s:.1f} s"),
        ]
        return rows


def quantile(values: list[float], q: float) -> float:
    """The nearest-rank ``q`` quantile of ``values`` (0.0 when empty)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def stages_reached(view: dict[str, Any]) -> dict[str, datetime]:
    """When the application was submitted and first reached each stage, from its timeline."""
    timeline = view.get("timeline") or []
    submitted = next((_at(e["at"]) for e in timeline if e.get("status") == "submitted"), None)
    if submitted is None:
        return {}
    reached: dict[str, datetime] = {Status.SUBMITTED.value: submitted}
    for entry in timeline:
        status = entry.get("status")
        if status in STAGES and status not in reached:
            reached[status] = _at(entry["at"])
    award = view.get("award") or {}
    tranches = award.get("tranches") or []
    if tranches and tranches[0].get("paid_at"):
        reached["tranche 1 paid"] = _at(tranches[0]["paid_at"])
    return reached


def stage_times(view: dict[str, Any]) -> dict[str, float]:
    """Seconds from submission to each stage the application reached, from its timeline."""
    reached = stages_reached(view)
    submitted = reached.pop(Status.SUBMITTED.value, None)
    if submitted is None:
        return {}
    return {stage: (at - submitted).total_seconds() for stage, at in reached.items()}


def stage_spans(views: list[dict[str, Any]]) -> dict[str, float]:
    """Seconds from the first submission of ``views`` to the last of them reaching each stage."""
    reached = [stages_reached(view) for view in views]
    firsts = [r[Status.SUBMITTED.value] for r in reached if r]
    if not firsts:
        return {}
    first = min(firsts)
    spans: dict[str, float] = {}
    for stage in STAGES:
        ats = [r[stage] for r in reached if stage in r]
        if ats:
            spans[stage] = (max(ats) - first).total_seconds()
    return spans


class LoadRun:
    """One run of the demo load against a running platform."""

    def __init__(
        self,
        api: Api,
        applications: int,
        *,
        rate: float = 0.0,
        auto_review: bool = False,
        accept_offers: bool = False,
        stall_timeout: float = 120.0,
        poll_interval: float = 1.0,
        until: str | None = None,
        run_id: str | None = None,
    ) -> None:
        self.api = api
        self.n = applications
        self.rate = rate
        self.auto_review = auto_review
        self.accept_offers = accept_offers
        self.stall_timeout = stall_timeout
        self.poll_interval = poll_interval
        if until is not None and until not in UNTIL_STAGES:
            raise ValueError(f"until: one of {', '.join(UNTIL_STAGES)}, not {until!r}")
        #: Statuses at or after ``until`` in journey order: an application there rests.
        self.past_until: frozenset[str] = frozenset(
            STAGES[STAGES.index(until) :] if until is not None else ()
        )
        self.run_id = run_id or uuid.uuid4().hex[:6]
        firms = max(1, -(-applications // PER_FIRM))
        self.tracked = [
            Tracked(number=i, firm_id=f"DEMO-{self.run_id}-{i % firms:03d}")
            for i in range(applications)
        ]
        self.started_at = datetime.now(UTC)
        self.decided: set[str] = set()
        self.decisions = 0
        self.late = 0
        self.errors: list[str] = []
        self.submitted = 0
        #: The applications not at rest when the run ended.
        self.stuck: list[str] = []
        self._stop = asyncio.Event()

    # -- the run -----------------------------------------------------------------------------

    async def run(
        self,
        on_tick: Callable[[LoadRun], None] | None = None,
        *,
        then: Callable[[], Awaitable[None]] | None = None,
    ) -> Summary:
        """Fund, submit, review, accept and report until everything rests; the summary.

        ``then``, when given, is awaited once the first pass ends (everything rests, or nothing
        moved for ``stall_timeout``), and the run follows the applications again until they
        rest: the chaos run stops killing there and lets the platform recover.
        """
        started, cpu_started = time.monotonic(), time.process_time()
        await self.fund()
        submitting = asyncio.create_task(self.submit_all())
        reviewing = asyncio.create_task(self.review_loop()) if self.auto_review else None
        try:
            stuck = await self.follow(submitting, on_tick)
            if then is not None:
                await then()
                stuck = await self.follow(submitting, on_tick)
        finally:
            self._stop.set()
            for task in (submitting, reviewing):
                if task is not None and not task.done():
                    task.cancel()
            for task in (submitting, reviewing):
                if task is not None:
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
        seconds = time.monotonic() - started
        self.stuck = stuck
        await self.refresh_views()
        summary = self.summary(seconds, stuck)
        summary.cpu_s = time.process_time() - cpu_started
        return summary

    async def fund(self) -> None:
        """This year's grant budget gets enough for every application of the run."""
        amount = {"amount": str(GRANT * self.n), "currency": CURRENCY}
        year = datetime.now(UTC).year
        created = await self.api.request(
            "disbursement",
            "POST",
            "/v1/budgets",
            headers=self.api.tokens.admin(),
            json={"incentive_type": "grant", "fiscal_year": year, "amount": amount},
            idempotent=True,
        )
        if created.status_code == 201:
            return
        if created.status_code != 409:
            raise PartUnavailable(f"budget: {created.status_code} {created.text}")
        topped = await self.api.request(
            "disbursement",
            "POST",
            f"/v1/budgets/grant-{year}/top-ups",
            headers=self.api.tokens.admin(),
            json={"amount": amount},
            idempotent=True,
        )
        if topped.status_code != 200:
            raise PartUnavailable(f"top-up: {topped.status_code} {topped.text}")

    async def submit_all(self) -> None:
        """Submit every application: ``rate`` per second when set, else as fast as answered."""
        gate = asyncio.Semaphore(CONCURRENCY)
        loop = asyncio.get_running_loop()
        begin = loop.time()

        async def submit(app: Tracked) -> None:
            if self.rate > 0:
                await asyncio.sleep(max(0.0, begin + app.number / self.rate - loop.time()))
            async with gate:
                await self.submit(app)

        await asyncio.gather(*(submit(app) for app in self.tracked))

    async def submit(self, app: Tracked) -> None:
        """One submission, retried with its own key until the service answers."""
        content = demo_content(app.number, app.firm_id, self.started_at)
        response = await self.api.request(
            "applications",
            "POST",
            "/v1/applications/submissions",
            headers={
                **self.api.tokens.firm(app.firm_id),
                "Idempotency-Key": _key(self.run_id, "submit", app.number),
            },
            json=content,
        )
        if response.status_code not in (200, 201):
            self.errors.append(f"submission {app.number}: {response.status_code} {response.text}")
            app.status = "refused"
            return
        app.application_id = response.json()["id"]
        app.status = Status.SUBMITTED.value
        self.submitted += 1

    async def review_loop(self) -> None:
        """Decide every open task of the run's applications, each as its assigned reviewer."""
        ours = {"ids": set[str]()}
        gate = asyncio.Semaphore(CONCURRENCY)
        while not self._stop.is_set():
            ours["ids"] = {a.application_id for a in self.tracked if a.application_id}
            try:
                tasks = await self.open_tasks()
            except PartUnavailable as exc:
                self.errors.append(f"inbox: {exc}")
                tasks = []
            todo = [
                t
                for t in tasks
                if t["application_id"] in ours["ids"] and t["task_id"] not in self.decided
            ]

            async def decide(task: dict[str, Any]) -> None:
                async with gate:
                    await self.decide(task)

            await asyncio.gather(*(decide(t) for t in todo))
            await self._pause(self.poll_interval / 2)

    async def open_tasks(self) -> list[dict[str, Any]]:
        """Every open task in the desk, page by page."""
        tasks: list[dict[str, Any]] = []
        offset = 0
        while True:
            page = await self.api.get_json(
                "review",
                "/v1/inbox",
                headers=self.api.tokens.admin(),
                params={"status": "open", "limit": 200, "offset": offset},
            )
            items = page["items"]
            tasks += items
            if len(items) < 200:
                return tasks
            offset += len(items)

    async def decide(self, task: dict[str, Any]) -> None:
        """Approve one task as the reviewer it is assigned to."""
        try:
            response = await self.api.request(
                "review",
                "POST",
                f"/v1/tasks/{task['task_id']}/decision",
                headers={
                    **self.api.tokens.reviewer(task["reviewer_id"]),
                    "Idempotency-Key": _key(self.run_id, "decide", task["task_id"]),
                },
                json={"decision": "approve", "comment": f"{task['stage']} review: sound."},
            )
        except PartUnavailable as exc:
            self.errors.append(f"decision: {exc}")
            return  # tried again on the next round, with the same key
        reason = _reason(response)
        if response.status_code == 200:
            self.decisions += 1
        elif (response.status_code, reason) in _LATE_ANSWERS:
            self.late += 1
        else:
            self.errors.append(
                f"decision {task['task_id']}: {response.status_code} {response.text[:300]}"
            )
        self.decided.add(task["task_id"])

    async def follow(
        self, submitting: asyncio.Task[None], on_tick: Callable[[LoadRun], None] | None
    ) -> list[str]:
        """Poll the run's applications and act for the firms until all rest; the stuck ids."""
        loop = asyncio.get_running_loop()
        last_change = loop.time()
        last_seen: dict[int, tuple[str, int, int]] = {}
        while True:
            await self.poll_statuses()
            await self.act_for_firms()
            seen = {a.number: a.progress() for a in self.tracked}
            if seen != last_seen:
                last_seen = seen
                last_change = loop.time()
            if on_tick is not None:
                on_tick(self)
            if submitting.done():
                submitting.result()  # a submission that failed for good ends the run here
                if all(self.rests(a) for a in self.tracked):
                    return []
                if loop.time() - last_change > self.stall_timeout:
                    return [
                        a.application_id or f"#{a.number}"
                        for a in self.tracked
                        if not self.rests(a)
                    ]
            await asyncio.sleep(self.poll_interval)

    def rests(self, app: Tracked) -> bool:
        """Whether ``app`` waits for nobody the run plays."""
        if app.status == "refused" or app.status in _ENDED or app.status in self.past_until:
            return True
        if not self.auto_review and app.status in _AWAITS_REVIEW:
            return True
        return not self.accept_offers and app.status == Status.OFFERED.value

    @property
    def at_rest(self) -> int:
        """How many applications rest now."""
        return sum(self.rests(a) for a in self.tracked)

    async def poll_statuses(self) -> None:
        """Every application's status, from the admin's listing (100 per request)."""
        by_id = {a.application_id: a for a in self.tracked if a.application_id}
        cursor: str | None = None
        try:
            while True:
                params: dict[str, Any] = {"limit": 100}
                if cursor:
                    params["cursor"] = cursor
                page = await self.api.get_json(
                    "applications",
                    "/v1/applications",
                    headers=self.api.tokens.admin(),
                    params=params,
                )
                for item in page["items"]:
                    app = by_id.get(item["id"])
                    if app is not None:
                        app.status, app.listed_at = item["status"], item["updated_at"]
                cursor = page.get("next_cursor")
                if not cursor:
                    return
        except PartUnavailable as exc:
            self.errors.append(f"listing: {exc}")

    async def act_for_firms(self) -> None:
        """Accept open offers and report the milestones that are due."""
        if not self.accept_offers:
            return
        gate = asyncio.Semaphore(CONCURRENCY)
        now = time.monotonic()

        async def act(app: Tracked) -> None:
            async with gate:
                try:
                    if app.status == Status.OFFERED.value and now - app.accepted_at > 10:
                        app.accepted_at = now
                        await self.firm_posts(app, "offer/accept", None, "accept")
                    elif app.status == Status.OFFER_ACCEPTED.value:
                        await self.report_due_milestone(app)
                except PartUnavailable as exc:
                    self.errors.append(f"firm {app.firm_id}: {exc}")

        await asyncio.gather(
            *(act(a) for a in self.tracked if a.application_id and not self.rests(a))
        )

    async def report_due_milestone(self, app: Tracked) -> None:
        """Report the milestone of the first unpaid tranche once the tranche before is paid.

        The view is read again only when the listing shows the application changed since.
        """
        view = await self.view(app) if app.view_is_stale() else app.view
        assert view is not None
        tranches = (view.get("award") or {}).get("tranches") or []
        for before, tranche in itertools.pairwise(tranches):
            if tranche["state"] == "paid":
                continue
            sequence = tranche["sequence"]
            if before["state"] != "paid" or sequence in app.reported:
                return
            reported = {m["sequence"] for m in view["award"].get("milestones") or []}
            if sequence in reported or await self.firm_posts(
                app,
                "milestones",
                {
                    "sequence": sequence,
                    "summary": f"Milestone {sequence} met.",
                    "evidence": [f"doc_demo_{app.number}_{sequence}"],
                },
                f"milestone-{sequence}",
            ):
                app.reported.add(sequence)
            else:
                app.view = None  # read it again, and report again, on the next round
            return

    async def firm_posts(self, app: Tracked, path: str, body: Any, act: str) -> bool:
        """The firm acts on its application with a key of its own for the act.

        True when the act took (200); a 409 (it moved on meanwhile, or it is not yet due) and
        any other answer, which is counted as an error, are False.
        """
        response = await self.api.request(
            "applications",
            "POST",
            f"/v1/applications/{app.application_id}/{path}",
            headers={
                **self.api.tokens.firm(app.firm_id),
                "Idempotency-Key": _key(self.run_id, act, app.application_id),
            },
            json=body,
        )
        if response.status_code == 200:
            return True
        if response.status_code != 409:
            self.errors.append(f"{act} {app.application_id}: {response.status_code}")
        return False

    async def view(self, app: Tracked) -> dict[str, Any]:
        """The firm's view of the application (kept in ``app.view``)."""
        view: dict[str, Any] = await self.api.get_json(
            "applications",
            f"/v1/applications/{app.application_id}",
            headers=self.api.tokens.firm(app.firm_id),
        )
        app.view, app.status = view, view["status"]
        return view

    async def refresh_views(self) -> None:
        """Every application's view, once the run is over."""
        gate = asyncio.Semaphore(CONCURRENCY * 2)

        async def refresh(app: Tracked) -> None:
            async with gate:
                try:
                    await self.view(app)
                except PartUnavailable as exc:
                    self.errors.append(f"view: {exc}")

        await asyncio.gather(*(refresh(a) for a in self.tracked if a.application_id))

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), timeout=seconds)

    # -- the summary -------------------------------------------------------------------------

    def summary(self, seconds: float, stuck: list[str]) -> Summary:
        """Counts per end state and the time from submission to each stage."""
        times: dict[str, list[float]] = {stage: [] for stage in STAGES}
        for app in self.tracked:
            for stage, at in stage_times(app.view or {}).items():
                times[stage].append(at)
        return Summary(
            applications=self.n,
            seconds=seconds,
            spans=stage_spans([a.view for a in self.tracked if a.view]),
            end_states=Counter(a.status for a in self.tracked),
            stages={
                stage: (len(v), quantile(v, 0.5), quantile(v, 0.99))
                for stage, v in times.items()
                if v
            },
            decisions=self.decisions,
            late_decisions=self.late,
            offers_accepted=sum(
                1 for a in self.tracked if (a.view or {}).get("award", {}) and _accepted(a.view)
            ),
            milestones_reported=sum(len(a.reported) for a in self.tracked),
            stuck=stuck,
            retries=dict(self.api.retries),
            errors=list(self.errors),
        )


def _accepted(view: dict[str, Any] | None) -> bool:
    award = (view or {}).get("award") or {}
    return award.get("offer_state") == "accepted"


def _reason(response: Any) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return None
    return body.get("reason") if isinstance(body, dict) else None
