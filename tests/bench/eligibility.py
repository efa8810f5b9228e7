"""The eligibility service end to end through the broker: decisions per second.

``n`` ``application.submitted`` envelopes (valid content, one distinct application each) are
produced to ``applications.events`` first; then the eligibility service starts in a process of
its own (uvicorn, fresh PostgreSQL database, a unique consumer group prefix) and assesses them,
publishing ``eligibility.assessed`` through its outbox relay. A consumer in this process counts
the decisions on ``eligibility.events``; afterwards each application must have exactly one
decision, each with its own event id.

The clock runs from the first decisions seen on the topic (after startup, migrations and the
group join) to the last; the rate counts only the decisions after that first fetch.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

from contracts import catalog
from contracts.envelope import Actor
from contracts.topics import get_topic
from contracts.v1.applications import CONTENT_EXAMPLE, ApplicationSubmitted
from services.kit.messaging import Record
from tests.bench.common import (
    BenchError,
    Result,
    assert_exactly_once,
    header,
    read_all,
)
from tests.bench.kit_hop import HOP_TARGET
from tests.bench.process import service_hop
from tests.bench.raw import RAW_HOP

ELIGIBILITY = "eligibility"
INPUT_TOPIC = get_topic("applications.events").name
OUTPUT_TOPIC = get_topic("eligibility.events").name
#: DESIGN target: decisions per second, deduplication and persistence included.
RATE_TARGET = 2_000.0


def make_submissions(n: int) -> tuple[list[Record], list[str]]:
    """``n`` encoded ``application.submitted`` records, one application each, and their ids.

    One envelope is built and validated with :func:`catalog.make_envelope`; the others are
    copies with a fresh event id and application id (encoding outside any timed section).
    """
    run = uuid.uuid4().hex[:6]
    example = catalog.example_payloads("application.submitted")[0]
    base_payload = ApplicationSubmitted.model_validate(
        {**example.model_dump(mode="json"), "firm_id": "BENCH", "content": CONTENT_EXAMPLE}
    )
    base = catalog.make_envelope(
        "application.submitted",
        base_payload,
        subject=base_payload.application_id,
        actor=Actor.system("bench"),
        producer="bench",
        correlation_id=uuid.uuid4(),
    )
    records: list[Record] = []
    subjects: list[str] = []
    for i in range(n):
        subject = f"app_bench{run}{i:07d}"
        envelope = base.model_copy(
            update={
                "event_id": uuid.uuid4(),
                "correlation_id": uuid.uuid4(),
                "subject": subject,
                "payload": base_payload.model_copy(update={"application_id": subject}),
            }
        )
        records.append(
            Record(
                topic=INPUT_TOPIC,
                value=catalog.encode(envelope),
                key=subject.encode(),
                headers=tuple(envelope.headers()),
            )
        )
        subjects.append(subject)
    return records, subjects


async def bench_eligibility(
    bootstrap: str,
    database_url: str,
    workdir: Path,
    n: int,
    *,
    stall_timeout: float = 60.0,
    on_progress: Callable[[int], None] | None = None,
) -> Result:
    """Decisions/s of the eligibility service; checks one decision per application after."""
    records, subjects = make_submissions(n)
    hop = await service_hop(
        "eligibility",
        bootstrap,
        database_url,
        workdir,
        records,
        subjects,
        OUTPUT_TOPIC,
        ("eligibility.assessed",),
        what=ELIGIBILITY,
        stall_timeout=stall_timeout,
        on_progress=on_progress,
    )
    seconds, timing = hop.seconds, hop.timing
    if hop.cpu_per_output is not None:
        timing += f"; service CPU {hop.cpu_per_output * 1e6:,.0f} us/decision"
    wanted = set(subjects)
    decisions = [r for r in await read_all(bootstrap, OUTPUT_TOPIC) if r.key.decode() in wanted]
    decided = assert_exactly_once(ELIGIBILITY, subjects, decisions, lambda r: bytes(r.key).decode())
    ids = {header(r, "event_id") for r in decisions}
    kinds = {header(r, "type") for r in decisions}
    if len(ids) != len(decisions) or kinds != {"eligibility.assessed"}:
        raise BenchError(f"{ELIGIBILITY}: {len(ids)} event ids, types {kinds}")
    return Result(
        ELIGIBILITY,
        decided,
        seconds,
        baseline=RAW_HOP,
        target=HOP_TARGET,
        rate_target=RATE_TARGET,
        note=f"service in its own process, {timing}; one decision per application checked",
    )
