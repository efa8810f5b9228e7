"""The applications' Temporal workflow histories, read from a real Temporal dev server.

An ``IncentiveApproval`` run (the scenario worker's fake activities, on its own task queue)
decides an application; the audit log (SQLite, filled by the service's own writer) holds
records keyed by the same application. ``incentives audit export`` carries the run's history
in the bundle (and in JSON Lines), the bundle still verifies, and ``incentives audit
workflows`` replays the history, from Temporal and from the bundle, against the current code.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from typer.testing import CliRunner, Result

from services.audit.domain.checkpoint import Signer
from services.audit.keys import key_path
from services.audit.settings import Settings
from services.audit.store import LogWriter
from services.cli.main import app as cli
from tests.audit.helpers import record
from tests.audit.test_cli import _running, flat
from tests.kit.helpers import eventually
from tests.workflows.scenarios import harness, ineligible


async def invoke(*args: str) -> Result:
    # Wide enough that no workflow id is wrapped in the table.
    runner = CliRunner(env={"COLUMNS": "300"})
    return await asyncio.to_thread(runner.invoke, cli, ["audit", *args])


async def test_export_carries_the_workflow_history_and_it_replays(
    temporal_dev: str, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    application = unique_name("app_audit").replace("-", "_")
    client = await Client.connect(temporal_dev, data_converter=pydantic_data_converter)
    async with harness(
        client, WorkflowEnvironment.from_client(client), task_queue=unique_name("audit-wf")
    ) as h:
        await ineligible(h, application)
    expected = await client.get_workflow_handle(application).fetch_history()

    url = f"sqlite+aiosqlite:///{tmp_path / 'audit.db'}"
    async for running in _running(url, tmp_path):
        signer = Signer.from_text(key_path(Settings(var_dir=tmp_path)).read_text())
        writer = LogWriter(running.engine, signer)
        await writer.load()
        await writer.append([record(1000 + n, key=application) for n in range(3)])
        temporal = ["--temporal", temporal_dev]

        bundle = tmp_path / "bundle.json"
        result = await invoke(
            "--url", running.url, "export", application, *temporal, "-o", str(bundle)
        )
        assert result.exit_code == 0, result.output
        document = json.loads(bundle.read_text())
        assert len(document["entries"]) == 3
        [run] = document["workflows"]
        assert (run["workflow_id"], run["run_id"]) == (application, expected.run_id)
        assert run["history"] == expected.to_json_dict()
        checked = await invoke("verify-bundle", str(bundle))
        assert checked.exit_code == 0, checked.output
        assert "1 workflow run(s) carried beside them" in flat(checked)

        lines = tmp_path / "export.jsonl"
        result = await invoke(
            "--url", running.url, "export", application, *temporal, "--format", "jsonl",
            "-o", str(lines),
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        events = [json.loads(line) for line in lines.read_text().splitlines()]
        assert sum(1 for e in events if e["source"] == "workflow") == len(expected.events)

        for args in ([application, *temporal], ["--from", str(bundle)], ["--from", str(lines)]):
            replayed = await invoke("workflows", *args)
            assert replayed.exit_code == 0, replayed.output
            assert "OK every one of the 1 run(s) replays" in flat(replayed)

        # Without ids: every IncentiveApproval workflow Temporal lists (its visibility store
        # catches up with the finished run in its own time).
        async def listed(temporal: list[str] = temporal) -> bool:
            replayed = await invoke("workflows", *temporal)
            assert replayed.exit_code == 0, replayed.output
            return application in replayed.output

        await eventually(listed, timeout=30)

        # An application Temporal never ran has no history: the bundle carries none.
        result = await invoke(
            "--url", running.url, "export", "APP-HIST", *temporal, "-o", str(bundle)
        )
        assert result.exit_code == 0, result.output
        assert json.loads(bundle.read_text())["workflows"] == []
        missing = await invoke("workflows", "APP-HIST", *temporal)
        assert missing.exit_code == 2
