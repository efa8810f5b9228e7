"""Record the scenario histories replayed in CI: ``python -m tests.workflows.record_histories``.

Run it after an intended workflow change (guarded by ``workflow.patched`` once runs exist in
production), then commit the JSON files under ``tests/workflows/histories``. Files of scenarios
that no longer exist are removed, so the folder always matches :data:`SCENARIOS`.

Name scenarios to record only those (``... record_histories offer_lapsed``): the histories
recorded before a patched change must be kept as they are, since replaying them is what shows
the patch keeps older runs working (``full_approval`` ended at the approval, before the offer).
"""

from __future__ import annotations

import asyncio
import gc
import sys
from collections.abc import Sequence
from pathlib import Path

from temporalio.contrib.pydantic import pydantic_data_converter

from tests.time_skipping import time_skipping_environment
from tests.workflows.scenarios import SCENARIOS, harness

HISTORIES = Path(__file__).parent / "histories"


async def record(names: Sequence[str] = ()) -> None:
    async with time_skipping_environment(pydantic_data_converter) as env:
        client = env.client
        async with harness(client, env) as h:
            for name, scenario in SCENARIOS.items():
                if names and name not in names:
                    continue
                workflow_id = f"history-{name}"
                await scenario(h, workflow_id)
                history = await client.get_workflow_handle(workflow_id).fetch_history()
                (HISTORIES / f"{name}.json").write_text(history.to_json())
                print(f"recorded {name}")
        for stale in set(HISTORIES.glob("*.json")) - {HISTORIES / f"{n}.json" for n in SCENARIOS}:
            stale.unlink()
            print(f"removed {stale.name}")


if __name__ == "__main__":
    asyncio.run(record(sys.argv[1:]))
    # Collect the Temporal client and worker objects while the interpreter is still whole;
    # left to finalisation they can abort the process (temporalio sdk-python #300).
    gc.collect()
