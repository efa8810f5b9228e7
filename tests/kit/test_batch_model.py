"""The batch consumer against a reference model, property-based, with an in-memory database.

The reference is the simplest correct consumer: one record at a time, each in a transaction
of its own, retrying transient failures until they pass and dead-lettering final ones. For any
stream of records (duplicates, poison, ignored types, business refusals, transient failures),
any cut into batches, any number of lanes, transient commit failures, a full redelivery
(a crash before the offset commit) and a batch handler whose ``preload`` refuses batches, the
batch consumer must reach the same outcome per record,
the same state changes in the same order per key, and the same dead letters.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
import zlib
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts.envelope import Envelope
from services.kit import consumer as consumer_module
from services.kit import retry as retry_module
from services.kit.consumer import IdempotentConsumer, Incoming, Outcome, _split_into_lanes
from services.kit.dlq import ConsumedRecord, parse_dead_letter
from services.kit.errors import BusinessRefusal, InvalidMessage, RetryableError
from services.kit.messaging import Record
from services.kit.retry import RetryPolicy
from services.kit.uow import UnitOfWorkError
from tests.kit.helpers import envelope
from tests.tiers import examples

#: Transient failures a handler may have before it succeeds (any number is waited out).
ATTEMPTS = 3
POLICY = RetryPolicy(initial_delay=0.0, max_delay=0.0, jitter=0.0)
PARTITIONS = 3
TOPIC = "model.events"
HANDLED = "application.submitted"
OTHER = "application.amended"  # a type the consumer ignores

# Envelopes are built once (pydantic work) and looked up by the fake decoder.
_SUBJECTS = [f"app_model{i:03d}" for i in range(4)]
_EVENTS: list[Envelope[Any]] = [
    envelope(_SUBJECTS[i % len(_SUBJECTS)], event_id=uuid.UUID(int=i + 1)) for i in range(8)
]
_IGNORED = envelope(_SUBJECTS[0], message_type=OTHER)


@dataclass(frozen=True)
class Behaviour:
    """What the handler does with one event: refuse it, or fail transiently N times first.

    ``refuse_in_preload``: a batch handler's ``preload`` refuses any batch holding the event
    (final), so the message must be dead-lettered alone, as a refusal by its handler would be.
    """

    refuse: bool = False
    transient_failures: int = 0
    refuse_in_preload: bool = False


def decode(raw: bytes, _type_hint: str | None = None) -> Envelope[Any]:
    """``b"event:<i>"`` -> the i-th prepared envelope; ``b"other"`` -> an ignored type."""
    if raw == b"other":
        return _IGNORED
    if raw.startswith(b"event:"):
        return _EVENTS[int(raw[6:])]
    raise InvalidMessage("not an envelope")


def partition_of(raw: bytes) -> int:
    """Records of one event (one subject) always land in the same partition, as keys do."""
    key = decode(raw).subject.encode() if raw != b"poison" else b"poison"
    return zlib.crc32(key) % PARTITIONS


# --- the in-memory database -------------------------------------------------------------------


@dataclass
class Database:
    """Committed state: processed marks and the state changes, as ordered lists per subject."""

    processed: set[uuid.UUID] = field(default_factory=set)
    effects: dict[str, list[uuid.UUID]] = field(default_factory=dict)
    failing_commits: set[int] = field(default_factory=set)
    commits: int = 0


class FakeUnitOfWork:
    """The parts of :class:`~services.kit.uow.UnitOfWork` the consumer and handler use.

    Commits of whole batches may be told to fail (a dropped connection). Single-message
    commits never do: the reference handles one message at a time and has no batch commits,
    so their failures would consume attempts the reference does not know about.
    """

    def __init__(self, db: Database) -> None:
        self._db = db
        self._batch = False
        self._marks: set[uuid.UUID] = set()
        self.effects: list[tuple[str, uuid.UUID]] = []
        self.commit_refused: str | None = None
        self._committed = False

    async def __aenter__(self) -> FakeUnitOfWork:
        return self

    async def __aexit__(
        self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        return None  # leaving without commit discards the staged work

    async def mark_processed_many(
        self, _consumer: str, event_ids: Collection[uuid.UUID]
    ) -> set[uuid.UUID]:
        await asyncio.sleep(0)  # a round trip: lets the other lanes run
        self._batch = True
        new = {e for e in event_ids if e not in self._db.processed and e not in self._marks}
        self._marks |= new
        return new

    async def mark_processed(self, consumer: str, event_id: uuid.UUID) -> bool:
        new = bool(await self.mark_processed_many(consumer, [event_id]))
        self._batch = False
        return new

    async def flush(self) -> None:
        await asyncio.sleep(0)

    async def commit(self) -> None:
        if self.commit_refused is not None:
            raise UnitOfWorkError(self.commit_refused)
        if self._committed:
            raise UnitOfWorkError("a unit of work commits once")
        await asyncio.sleep(0)
        if self._batch:
            self._db.commits += 1
            if self._db.commits in self._db.failing_commits:
                raise ConnectionError("connection reset during commit")
        self._committed = True
        # Marks already committed by another lane would have blocked and conflicted in a real
        # database; the model keeps the invariant explicit instead.
        assert not self._marks & self._db.processed, "a message was marked processed twice"
        self._db.processed |= self._marks
        for subject, event_id in self.effects:
            self._db.effects.setdefault(subject, []).append(event_id)


class Handler:
    """Applies each event's behaviour; counts invocations per event across all attempts."""

    def __init__(self, behaviours: dict[uuid.UUID, Behaviour]) -> None:
        self.behaviours = behaviours
        self.invocations: dict[uuid.UUID, int] = {}

    async def __call__(self, incoming: Incoming, uow: Any) -> None:
        event_id = incoming.envelope.event_id
        count = self.invocations[event_id] = self.invocations.get(event_id, 0) + 1
        behaviour = self.behaviours[event_id]
        await asyncio.sleep(0)
        if behaviour.refuse:
            raise BusinessRefusal("refused by the model")
        if count <= behaviour.transient_failures:
            raise RetryableError("transient failure in the model")
        uow.effects.append((incoming.envelope.subject, event_id))


class PreloadingHandler(Handler):
    """:class:`Handler` as a batch handler: ``preload`` may refuse a whole batch."""

    def __init__(self, behaviours: dict[uuid.UUID, Behaviour]) -> None:
        super().__init__(behaviours)
        self.preloads = 0

    async def preload(self, batch: Sequence[Incoming], uow: Any) -> None:
        self.preloads += 1
        await asyncio.sleep(0)  # a round trip
        if any(self.behaviours[i.envelope.event_id].refuse_in_preload for i in batch):
            raise BusinessRefusal("refused by the model's preload")


# --- the reference --------------------------------------------------------------------------------


@dataclass
class Reference:
    """One record at a time: what the batch consumer must be equivalent to."""

    behaviours: dict[uuid.UUID, Behaviour]
    preloading: bool = False
    processed: set[uuid.UUID] = field(default_factory=set)
    effects: dict[str, list[uuid.UUID]] = field(default_factory=dict)
    invocations: dict[uuid.UUID, int] = field(default_factory=dict)
    dead: list[tuple[int, int, str, int]] = field(default_factory=list)

    def deliver(self, records: Sequence[ConsumedRecord]) -> list[Outcome]:
        return [self._one(r) for r in records]

    def _one(self, record: ConsumedRecord) -> Outcome:
        where = (record.partition, record.offset)
        try:
            env = decode(record.value)
        except InvalidMessage:
            self.dead.append((*where, "undecodable", 1))
            return Outcome.DEAD_LETTERED
        if env.type != HANDLED:
            return Outcome.IGNORED
        if env.event_id in self.processed:
            return Outcome.DUPLICATE
        behaviour = self.behaviours[env.event_id]
        if self.preloading and behaviour.refuse_in_preload:
            self.dead.append((*where, "business_refusal", 1))
            return Outcome.DEAD_LETTERED
        while True:  # a transient failure is waited out, never dead-lettered
            count = self.invocations[env.event_id] = self.invocations.get(env.event_id, 0) + 1
            if behaviour.refuse:
                self.dead.append((*where, "business_refusal", 1))
                return Outcome.DEAD_LETTERED
            if count > behaviour.transient_failures:
                self.processed.add(env.event_id)
                self.effects.setdefault(env.subject, []).append(env.event_id)
                return Outcome.PROCESSED


# --- the property ---------------------------------------------------------------------------------


class _Silent:
    """A logger that drops everything: hundreds of examples dead-letter with tracebacks."""

    def __getattr__(self, _name: str) -> Any:
        return lambda *_args, **_kwargs: None


@pytest.fixture(autouse=True, scope="module")
def _quiet_logs() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(consumer_module, "log", _Silent())
        patch.setattr(retry_module, "log", _Silent())
        yield


_values = st.one_of(
    st.integers(0, len(_EVENTS) - 1).map(lambda i: f"event:{i}".encode()),
    st.just(b"poison"),
    st.just(b"other"),
)
_behaviours = st.builds(
    Behaviour,
    refuse=st.sampled_from([False, False, False, True]),
    transient_failures=st.integers(0, ATTEMPTS + 1),
    refuse_in_preload=st.sampled_from([False, False, False, False, True]),
)


def _records(values: list[bytes]) -> list[ConsumedRecord]:
    offsets = dict.fromkeys(range(PARTITIONS), 0)
    records = []
    for value in values:
        partition = partition_of(value)
        records.append(
            ConsumedRecord(
                topic=TOPIC,
                partition=partition,
                offset=offsets[partition],
                key=None,
                value=value,
            )
        )
        offsets[partition] += 1
    return records


def _batches(records: list[ConsumedRecord], cuts: list[int]) -> list[list[ConsumedRecord]]:
    bounds = sorted({0, len(records), *(c % (len(records) + 1) for c in cuts)})
    return [records[a:b] for a, b in itertools.pairwise(bounds) if b > a]


class DeadLetters:
    def __init__(self) -> None:
        self.records: list[Record] = []

    async def __call__(self, records: Sequence[Record]) -> None:
        self.records.extend(records)

    def summary(self) -> list[tuple[int, int, str, int]]:
        out = []
        for record in self.records:
            info = parse_dead_letter(record.headers)
            out.append((info.source_partition, info.source_offset, info.reason, info.attempts))
        return out


@settings(
    max_examples=examples(150),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    values=st.lists(_values, min_size=1, max_size=30),
    behaviours=st.lists(_behaviours, min_size=len(_EVENTS), max_size=len(_EVENTS)),
    cuts=st.lists(st.integers(0, 30), max_size=5),
    lanes=st.sampled_from([1, 2, 3]),
    # Batch commits that fail. At most two: every batch then succeeds within its three
    # attempts; exhausting them is covered by the unit tests.
    failing_commits=st.sets(st.integers(1, 12), max_size=2),
    redeliver=st.booleans(),
    preloading=st.booleans(),
)
def test_batches_are_equivalent_to_one_record_at_a_time(
    values: list[bytes],
    behaviours: list[Behaviour],
    cuts: list[int],
    lanes: int,
    failing_commits: set[int],
    redeliver: bool,
    preloading: bool,
) -> None:
    by_event = {env.event_id: b for env, b in zip(_EVENTS, behaviours, strict=True)}
    records = _records(values)
    deliveries = _batches(records, cuts) + (_batches(records, cuts[::-1]) if redeliver else [])

    reference = Reference(by_event, preloading=preloading)
    expected = [reference.deliver(batch) for batch in deliveries]

    db = Database(failing_commits=failing_commits)
    handler = PreloadingHandler(by_event) if preloading else Handler(by_event)
    dead = DeadLetters()
    consumer = IdempotentConsumer(
        "model",
        handler,
        uow_factory=lambda: FakeUnitOfWork(db),  # type: ignore[arg-type,return-value]
        dead_letters=dead,
        types={HANDLED},
        retry=POLICY,
        decode=decode,
        lanes=lanes,
    )

    async def run() -> list[list[Outcome]]:
        return [await consumer.process_batch(batch) for batch in deliveries]

    actual = asyncio.run(run())

    assert actual == expected
    assert db.effects == reference.effects
    assert db.processed == reference.processed
    assert sorted(dead.summary()) == sorted(reference.dead)
    # Each event changed state at most once, however often it was delivered.
    applied = [e for effects in db.effects.values() for e in effects]
    assert len(applied) == len(set(applied))


@given(
    partitions=st.lists(
        st.tuples(st.sampled_from("ab"), st.integers(0, 5)), min_size=1, max_size=40
    ),
    lanes=st.integers(1, 5),
)
def test_lanes_keep_each_partition_whole_and_in_order(
    partitions: list[tuple[str, int]], lanes: int
) -> None:
    items = [
        (
            index,
            Incoming(
                envelope=_EVENTS[0],
                record=ConsumedRecord(topic=t, partition=p, offset=index, key=None, value=b""),
            ),
        )
        for index, (t, p) in enumerate(partitions)
    ]
    split = _split_into_lanes(items, lanes)
    assert len(split) <= lanes
    assert sorted(i for lane in split for i, _ in lane) == list(range(len(items)))
    owner: dict[tuple[str, int], int] = {}
    for number, lane in enumerate(split):
        assert lane, "no empty lanes"
        assert [i for i, _ in lane] == sorted(i for i, _ in lane)  # record order kept
        for _i, incoming in lane:
            where = (incoming.record.topic, incoming.record.partition)
            assert owner.setdefault(where, number) == number  # one partition, one lane
