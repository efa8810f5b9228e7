"""The HTTP load generator: ``python -m tests.bench.loadgen SPEC.json``, in a process of its own.

Plain HTTP/1.1 over keep-alive asyncio streams on uvloop: a request is one prebuilt byte
string with a fresh ``Idempotency-Key`` and a distinct body, and the answer is read by its
``Content-Length``, so the generator costs little next to the app it drives. What it costs is
measured (CPU seconds of this process over the timed section) and reported with the figures.

Two modes:

- ``closed``: ``concurrency`` connections, each sending its next request as soon as the last
  one is answered, until ``n`` are done: the saturation rate.
- ``open``: request ``i`` is due at ``start + i / rate``, whether or not earlier ones have been
  answered (up to ``concurrency`` in flight). Latency counts from the due time, so a request
  that waited for a free connection counts its wait (no coordinated omission).

A connection the server closed while it sat idle (its keep-alive timeout, at low offered
rates) is opened again and the request sent on the new one; the count is reported.

Every answer must have the expected status; the result (JSON on stdout) holds the latencies'
p50 and p99, the elapsed and CPU seconds, and the first failure if any.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvloop

#: Marker in the body template replaced by the request's number (a distinct body each).
SEQ_MARKER = "{{seq}}"


@dataclass(frozen=True)
class Spec:
    """What to send and how."""

    host: str
    port: int
    path: str
    mode: str
    n: int
    concurrency: int
    #: Header sets (one per firm), used round-robin.
    header_sets: Sequence[dict[str, str]]
    body_template: str
    expect_status: int = 201
    rate: float = 0.0

    @classmethod
    def load(cls, path: Path) -> Spec:
        """The spec from its JSON file."""
        return cls(**json.loads(path.read_text()))


def build_requests(spec: Spec) -> list[bytes]:
    """Every request, complete and encoded, before the clock starts."""
    prefix, _, suffix = spec.body_template.partition(SEQ_MARKER)
    heads = [
        "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        for headers in spec.header_sets
    ]
    requests: list[bytes] = []
    for i in range(spec.n):
        body = f"{prefix}{i}{suffix}".encode()
        requests.append(
            (
                f"POST {spec.path} HTTP/1.1\r\nHost: {spec.host}:{spec.port}\r\n"
                f"{heads[i % len(heads)]}Idempotency-Key: {uuid.uuid4()}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode()
            + body
        )
    return requests


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> int:
    """Send one request; read its answer; the status code."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
            break
    if length:
        await reader.readexactly(length)
    return status


async def run(spec: Spec) -> dict[str, Any]:
    """Drive the app as ``spec`` says; the figures as a dictionary."""
    requests = build_requests(spec)
    connections = [
        await asyncio.open_connection(spec.host, spec.port) for _ in range(spec.concurrency)
    ]
    latencies: list[float] = []
    failures: list[str] = []
    next_index = 0
    reconnects = 0
    interval = 1.0 / spec.rate if spec.mode == "open" else 0.0
    writers = [writer for _, writer in connections]

    async def send(
        slot: int, reader: asyncio.StreamReader, request: bytes
    ) -> tuple[int, asyncio.StreamReader]:
        """The status of ``request``, on a fresh connection if the server closed this one."""
        nonlocal reconnects
        try:
            return await _exchange(reader, writers[slot], request), reader
        except asyncio.IncompleteReadError as exc:
            if exc.partial:
                raise
        except ConnectionResetError:
            pass
        # Nothing came back: the server closed the connection while it was idle (its
        # keep-alive timeout, met at low offered rates) before reading this request.
        writers[slot].close()
        reader, writers[slot] = await asyncio.open_connection(spec.host, spec.port)
        reconnects += 1
        return await _exchange(reader, writers[slot], request), reader

    async def worker(slot: int, reader: asyncio.StreamReader) -> None:
        nonlocal next_index
        loop = asyncio.get_running_loop()
        while next_index < spec.n and not failures:
            i = next_index
            next_index += 1
            if interval:
                due = started + i * interval
                delay = due - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
            else:
                due = loop.time()
            status, reader = await send(slot, reader, requests[i])
            latencies.append((loop.time() - due) * 1000)
            if status != spec.expect_status:
                failures.append(f"request {i}: status {status}")

    loop = asyncio.get_running_loop()
    cpu_started = time.process_time()
    started = loop.time()
    try:
        await asyncio.gather(*(worker(slot, r) for slot, (r, _) in enumerate(connections)))
    finally:
        seconds = loop.time() - started
        cpu_seconds = time.process_time() - cpu_started
        for writer in writers:
            writer.close()
    ordered = sorted(latencies)

    def quantile(q: float) -> float | None:
        if not ordered:
            return None
        return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]

    return {
        "n": len(latencies),
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "p50_ms": quantile(0.50),
        "p99_ms": quantile(0.99),
        "reconnects": reconnects,
        "failures": len(failures),
        "first_failure": failures[0] if failures else None,
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Run the spec file given as the only argument; print the figures as JSON."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m tests.bench.loadgen SPEC.json", file=sys.stderr)
        return 2
    result = uvloop.run(run(Spec.load(Path(args[0]))))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
