"""``incentives audit`` against a running audit API, with the stored ledger tampered with.

The log lives in SQLite or PostgreSQL and is filled by the service's own writer. The API needs
no broker, so none is started (the service waits for one in the background and serves its API
meanwhile).
Each tamper case changes the leaf rows directly, as someone with database access would.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine
from typer.testing import CliRunner, Result

from services.audit.domain.checkpoint import Signer
from services.audit.domain.leaves import parse_leaf
from services.audit.keys import key_path
from services.audit.main import create_app
from services.audit.settings import Settings
from services.audit.store import LogWriter
from services.cli.main import app as cli
from services.kit.db import create_engine
from services.kit.dlq import ConsumedRecord
from tests.audit.helpers import AUDITOR, record
from tests.kit.helpers import fresh_database
from tests.support import free_port, serving

SIZE = 300
SUBJECT = "APP-HIST"


@dataclass
class Running:
    client: httpx.AsyncClient
    url: str
    engine: AsyncEngine
    tmp: Path

    async def cli(self, *args: str) -> Result:
        argv = ["audit", "--url", self.url, *args]
        return await asyncio.to_thread(CliRunner().invoke, cli, argv)

    async def sql(self, statement: str, **params: object) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(sa.text(statement), params)

    async def append(self, first: int, count: int) -> None:
        signer = Signer.from_text(key_path(Settings(var_dir=self.tmp)).read_text())
        writer = LogWriter(self.engine, signer)
        await writer.load()
        await writer.append(
            [record(n, key=SUBJECT if n % 50 == 0 else None) for n in range(first, first + count)]
        )


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.integration)])
async def running(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Running]:
    async with AsyncExitStack() as stack:
        if request.param == "sqlite":
            url = f"sqlite+aiosqlite:///{tmp_path / 'audit.db'}"
        else:
            url = await stack.enter_async_context(
                fresh_database(request.getfixturevalue("pg_url"), "auditcli")
            )
        async for state in _running(url, tmp_path):
            yield state


async def _running(url: str, tmp_path: Path) -> AsyncIterator[Running]:
    port = free_port()
    settings = Settings(
        kafka_bootstrap=f"127.0.0.1:{free_port()}",  # nothing listens: the API needs no broker
        database_url=url,
        port=port,
        var_dir=tmp_path,
    )
    app = create_app(settings)
    engine = create_engine(url)
    try:
        async with serving(app, port) as client:
            state = Running(client, f"http://127.0.0.1:{port}", engine, tmp_path)
            await state.append(0, SIZE)
            yield state
    finally:
        await engine.dispose()


async def test_verify_checkpoint_history_and_bundles(running: Running, tmp_path: Path) -> None:
    result = await running.cli("verify")
    assert result.exit_code == 0, result.output
    assert f"{SIZE} leaves hash to the signed root of tree size {SIZE}" in flat(result)
    assert "leaves/s" in flat(result)

    printed = await running.cli("checkpoint")
    assert printed.exit_code == 0
    assert printed.output.startswith(f"incentives.example/audit\n{SIZE}\n")
    saved = tmp_path / "cp.txt"
    assert (await running.cli("checkpoint", "--save", str(saved))).exit_code == 0
    await running.append(SIZE, 25)
    result = await running.cli("verify", "--against", str(saved))
    assert result.exit_code == 0, result.output
    assert f"consistent with the saved checkpoint of {SIZE} leaves" in flat(result)

    history = await running.cli("history", SUBJECT)
    assert history.exit_code == 0, history.output
    assert history.output.count(" ok ") + history.output.count(" ok│") >= 1
    assert "FAIL" not in flat(history)

    bundle = tmp_path / "app.json"
    exported = await running.cli("export", SUBJECT, "--no-workflow-history", "-o", str(bundle))
    assert exported.exit_code == 0, exported.output
    document = json.loads(bundle.read_text())
    assert len(document["entries"]) == 7  # records 0, 50, ..., 300
    key = (await running.client.get("/v1/log/key", headers=AUDITOR)).text
    checked = await asyncio.to_thread(
        CliRunner().invoke, cli, ["audit", "verify-bundle", str(bundle), "--key", key]
    )
    assert checked.exit_code == 0, checked.output
    assert "7 entries are in the log of 325 leaves" in flat(checked)

    whole = tmp_path / "all.json"
    exported = await running.cli("export", "--all", "--no-workflow-history", "-o", str(whole))
    assert exported.exit_code == 0, exported.output
    checked = await asyncio.to_thread(
        CliRunner().invoke, cli, ["audit", "verify-bundle", str(whole)]
    )
    assert checked.exit_code == 0, checked.output

    # The same bundles as JSON Lines verify the same way; CSV is for reading.
    for args, count in (([SUBJECT], 7), (["--all"], SIZE + 25)):
        lines = tmp_path / "export.jsonl"
        exported = await running.cli(
            "export", *args, "--format", "jsonl", "--no-workflow-history", "-o", str(lines)
        )
        assert exported.exit_code == 0, exported.output
        assert len(lines.read_text().splitlines()) == 1 + count
        checked = await asyncio.to_thread(
            CliRunner().invoke, cli, ["audit", "verify-bundle", str(lines), "--key", key]
        )
        assert checked.exit_code == 0, checked.output
        assert f"{count} entries are in the log of {SIZE + 25} leaves" in flat(checked)
    table = tmp_path / "export.csv"
    exported = await running.cli(
        "export", SUBJECT, "--format", "csv", "--no-workflow-history", "-o", str(table)
    )
    assert exported.exit_code == 0, exported.output
    header, *rows = table.read_text().splitlines()
    assert header.startswith("source,application_id,index,topic")
    assert len(rows) == 7
    assert all(row.startswith(f"log,{SUBJECT},") for row in rows)
    lines.write_text(lines.read_text().replace(lines.read_text().splitlines()[5], "{}"))
    checked = await asyncio.to_thread(
        CliRunner().invoke, cli, ["audit", "verify-bundle", str(lines), "--key", key]
    )
    assert checked.exit_code == 1, checked.output

    # A bundle edited after export fails offline.
    document["entries"][3]["leaf"] = document["entries"][4]["leaf"]
    bundle.write_text(json.dumps(document))
    checked = await asyncio.to_thread(
        CliRunner().invoke, cli, ["audit", "verify-bundle", str(bundle), "--key", key]
    )
    assert checked.exit_code == 1
    assert "FAIL" in flat(checked)


def flat(result: Result) -> str:
    """The output with Rich's line wrapping undone."""
    return " ".join(result.output.split())


FORGED = b'{"headers":[],"key":null,"topic":"applications.events","value":"Zm9yZ2Vk"}'


async def _shift(running: Running, *, from_index: int, by: int) -> None:
    # Two steps through negative indexes, so no row ever collides with another.
    await running.sql("UPDATE audit_leaves SET idx = -idx - 1 WHERE idx >= :k", k=from_index)
    await running.sql("UPDATE audit_leaves SET idx = -idx - 1 + :by WHERE idx < 0", by=by)


async def test_modified_leaf_is_named(running: Running) -> None:
    await running.sql("UPDATE audit_leaves SET leaf = :leaf WHERE idx = 123", leaf=FORGED)
    result = await running.cli("verify")
    assert result.exit_code == 1
    assert "modified (leaf 123)" in flat(result)


async def test_deleted_leaf_is_named(running: Running) -> None:
    await running.sql("DELETE FROM audit_leaves WHERE idx = 77")
    result = await running.cli("verify")
    assert result.exit_code == 1
    assert "missing (leaf 77)" in flat(result)
    await _shift(running, from_index=78, by=-1)  # and the indexes closed over the gap
    result = await running.cli("verify")
    assert result.exit_code == 1
    assert "deleted (leaf 77)" in flat(result)


async def test_inserted_leaf_is_named(running: Running) -> None:
    await _shift(running, from_index=200, by=1)
    await running.sql(
        'INSERT INTO audit_leaves (idx, leaf_hash, leaf, topic, partition, "offset", logged_at)'
        " VALUES (200, :h, :leaf, 'applications.events', 0, 0, CURRENT_TIMESTAMP)",
        h=b"\x01" * 32,
        leaf=FORGED,
    )
    result = await running.cli("verify")
    assert result.exit_code == 1
    assert "inserted (leaf 200)" in flat(result)


async def test_swapped_leaves_are_named(running: Running) -> None:
    async with running.engine.connect() as conn:
        rows = await conn.execute(
            sa.text("SELECT idx, leaf FROM audit_leaves WHERE idx IN (40, 250)")
        )
        leaf = {int(idx): bytes(value) for idx, value in rows}
    await running.sql("UPDATE audit_leaves SET leaf = :leaf WHERE idx = 40", leaf=leaf[250])
    await running.sql("UPDATE audit_leaves SET leaf = :leaf WHERE idx = 250", leaf=leaf[40])
    result = await running.cli("verify")
    assert result.exit_code == 1
    assert "reordered (leaf 40): leaves 40 and 250 are swapped" in flat(result)


async def test_rewrite_re_signed_is_caught_against_an_earlier_checkpoint(
    running: Running, tmp_path: Path
) -> None:
    saved = tmp_path / "before.txt"
    assert (await running.cli("checkpoint", "--save", str(saved))).exit_code == 0
    # The operator rewrites leaf 10, rebuilds the whole tree and signs it with the log's key.
    await running.sql("UPDATE audit_leaves SET leaf = :leaf WHERE idx = 10", leaf=FORGED)
    async with running.engine.connect() as conn:
        leaves = [
            bytes(r[0])
            for r in await conn.execute(sa.text("SELECT leaf FROM audit_leaves ORDER BY idx"))
        ]
    await running.sql("DELETE FROM audit_leaves")
    await running.sql("DELETE FROM audit_nodes")
    await running.sql("DELETE FROM audit_checkpoints")
    signer = Signer.from_text(key_path(Settings(var_dir=tmp_path)).read_text())
    writer = LogWriter(running.engine, signer)
    await writer.load()
    rebuilt = []
    for n, leaf in enumerate(leaves):
        parsed = parse_leaf(leaf)
        rebuilt.append(
            ConsumedRecord(
                topic=parsed.topic,
                partition=0,
                offset=n,
                key=parsed.key,
                value=parsed.value,
                headers=parsed.headers,
            )
        )
    await writer.append(rebuilt)

    assert (await running.cli("verify")).exit_code == 0  # consistent with itself
    result = await running.cli("verify", "--against", str(saved))
    assert result.exit_code == 1
    assert "rewritten" in flat(result)
    assert "no valid consistency proof from the saved checkpoint" in flat(result)
