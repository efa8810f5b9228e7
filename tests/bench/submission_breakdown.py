"""Per-request CPU by stage of a submission, from a py-spy recording of the applications service.

The same method as :mod:`tests.bench.breakdown` (the first stage whose pattern occurs in a
sampled stack takes the sample; setup and imports are left out), with the stages of an HTTP
submission::

    py-spy record -r 200 -f raw -o var/prof/submissions.txt --pid <applications service>
    python -m tests.bench.submission_breakdown var/prof/submissions.txt --rate 200 \\
        --requests 2250

SQLAlchemy runs statements in greenlets, which py-spy records as stacks of their own: those
without a route frame are put in the SQL stage their frames show (the session's commit or
flush), else in "sql (other)".
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from tests.bench.breakdown import Stages, breakdown, table

#: Stages, first match wins; each with the stack substrings that put a sample in it.
STAGES: Stages = (
    ("relay", ("services/kit/outbox.py",)),
    ("consumer, kafka", ("services/kit/consumer.py", "faststream/", "aiokafka/")),
    ("auth (JWT)", ("services/kit/auth.py",)),
    ("body validation", ("request_body_to_args (", "_validate_value_with_model_field (")),
    ("response (view, JSON)", ("_answer (services/applications/api.py",)),
    ("sql: BEGIN", ("_start_transaction (",)),
    ("sql: rows (record, timeline, key)", ("_insert_rows (", "Session._flush (")),
    ("sql: outbox row, COMMIT", ("commit (services/kit/uow.py", "Session.commit (")),
    ("outbox staging (envelope)", ("add_outbox (", "make_envelope (")),
    ("record building", ("_new_record (", "_timeline_entry (", "SQLModel.__init__ (")),
    ("domain checks", ("check_submission (", "fingerprint (", "submit_new (")),
    ("session open/close", ("services/kit/uow.py",)),
    ("sql (other)", ("sqlalchemy/", "asyncpg/")),
    ("routing, middleware", ("starlette/", "fastapi/", "services/kit/http.py")),
    ("http server", ("uvicorn/", "httptools")),
    ("event loop", ("asyncio/", "uvloop")),
)


def main(argv: Sequence[str] | None = None) -> int:
    """Print the per-stage table of a recording."""
    parser = argparse.ArgumentParser(prog="python -m tests.bench.submission_breakdown")
    parser.add_argument("recording", type=Path, help="py-spy raw output (-f raw)")
    parser.add_argument("--rate", type=float, default=100.0, help="py-spy samples per second")
    parser.add_argument("--requests", type=int, required=True, help="submissions recorded")
    args = parser.parse_args(argv)
    counts = breakdown(args.recording.read_text().splitlines(), stages=STAGES)
    print("\n".join(table(counts, STAGES, rate=args.rate, units=args.requests, unit="req")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
