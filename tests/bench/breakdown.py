"""Per-message CPU by stage, from a py-spy profile of a benchmark run.

``py-spy record -f raw`` writes one line per distinct stack (``frame;frame;… count``). Each
sample is put in the first stage (in the order of :data:`STAGES`) one of whose patterns occurs
in its stack; samples of setup, baselines and verification are left out. With ``--rate`` (the
sampling rate given to py-spy) and ``--messages``, counts become microseconds of CPU per
message::

    py-spy record -r 250 -f raw -o var/prof/run.txt --subprocesses -- \\
        .venv/bin/python -m tests.bench --only kit-pg --n 4000
    python -m tests.bench.breakdown var/prof/run.txt --rate 250 --messages 4000

``--process`` selects one process of the recording by a substring of its command line (the
eligibility service runs in a process of its own).
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

#: Stacks left out: work outside the timed path (setup, baselines, checks, imports).
EXCLUDED: tuple[str, ...] = (
    "tests/bench/raw.py",
    "seed (tests/bench",
    "read_all (tests/bench",
    "make_inputs (tests/bench",
    "make_submissions (tests/bench",
    "_check_state (tests/bench",
    "assert_exactly_once",
    "produce (tests/bench",
    "_find_and_load",
    "upgrade_to_head",
    "services/kit/migrations.py",
    "alembic/",
    "create_topics",
    "ensure_topics",
    # idle: waiting in the selector or on a thread's condition is not CPU
    "EpollSelector.select (",
    "Condition.wait (",
    "Event.wait (",
    "Queue.get (",
)
#: Stages, first match wins; each with the stack substrings that put a sample in it.
STAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("decode", ("decode_envelope (",)),
    ("dedupe", ("mark_processed_many (", "mark_processed (")),
    ("outbox", ("add_outbox (", "_outbox_row (")),
    ("sql (staged rows)", ("_flush_staged (",)),
    ("commit", ("commit (services/kit/uow.py",)),
    ("relay", ("services/kit/outbox.py",)),
    (
        "handler sql",
        (
            "sqlalchemy/",
            "asyncpg/",
            "aiosqlite/",
        ),
    ),
    ("handler", ("tests/bench/kit_hop.py", "services/eligibility/handlers.py", "preload (")),
    ("consumer (kit)", ("services/kit/consumer.py",)),
    ("kafka", ("aiokafka/", "faststream/")),
    ("event loop", ("asyncio/", "uvloop")),
)


#: A stage table: each stage's name with the stack substrings that put a sample in it.
Stages = tuple[tuple[str, tuple[str, ...]], ...]


def classify(stack: str, stages: Stages = STAGES) -> str | None:
    """The stage of one sampled stack, or ``None`` when it is left out."""
    if any(pattern in stack for pattern in EXCLUDED):
        return None
    for stage, patterns in stages:
        if any(pattern in stack for pattern in patterns):
            return stage
    return "other"


def breakdown(
    lines: Sequence[str], process: str | None = None, stages: Stages = STAGES
) -> Counter[str]:
    """Samples per stage in a raw py-spy recording."""
    counts: Counter[str] = Counter()
    for line in lines:
        stack, _, count = line.rstrip("\n").rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        # With --subprocesses, the leading frames name the process chain; the last one counts.
        own = [f for f in frames if f.startswith("process ")]
        if process is not None and (not own or process not in own[-1]):
            continue
        stage = classify(stack, stages)
        if stage is not None:
            counts[stage] += int(count)
    return counts


def table(
    counts: Counter[str], stages: Stages, *, rate: float, units: int, unit: str = "msg"
) -> list[str]:
    """The per-stage lines: samples, share and microseconds of CPU per ``unit``."""
    total = sum(counts.values())
    per_sample_us = 1e6 / rate
    width = max(20, *(len(stage) for stage, _ in stages))
    lines = [f"{'stage':<{width}} {'samples':>8} {'share':>7} {'us/' + unit:>8}"]
    for stage in [stage for stage, _ in stages] + ["other"]:
        if counts[stage]:
            us = counts[stage] * per_sample_us / units
            lines.append(
                f"{stage:<{width}} {counts[stage]:>8} {counts[stage] / total:>7.1%} {us:>8.0f}"
            )
    lines.append(f"{'total':<{width}} {total:>8} {1:>7.0%} {total * per_sample_us / units:>8.0f}")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    """Print the per-stage table of a recording."""
    parser = argparse.ArgumentParser(prog="python -m tests.bench.breakdown")
    parser.add_argument("recording", type=Path, help="py-spy raw output (-f raw)")
    parser.add_argument("--rate", type=float, default=100.0, help="py-spy samples per second")
    parser.add_argument("--messages", type=int, required=True, help="messages in the timed run")
    parser.add_argument("--process", help="only the process whose command line contains this")
    args = parser.parse_args(argv)
    counts = breakdown(args.recording.read_text().splitlines(), args.process)
    print("\n".join(table(counts, STAGES, rate=args.rate, units=args.messages)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
