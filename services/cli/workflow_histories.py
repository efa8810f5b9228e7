"""The applications' Temporal workflow histories: fetched, carried in exports, replayed.

An application's ``IncentiveApproval`` workflow has the application id as its workflow id;
continue-as-new makes one run follow another, so an application's history is the chain of
its runs, oldest first (each run's start names the run it continues).

- :func:`fetch_application` and :func:`fetch_all` read the histories from Temporal;
- :func:`history_documents` / :func:`histories_from_documents` turn them into the JSON the
  export bundle carries (Temporal's own history JSON, as ``tctl`` and the Web UI write it) and
  back;
- :func:`replay` runs them against the current workflow code (``temporalio``'s
  :class:`~temporalio.worker.Replayer`) and reports each run that no longer replays: a
  non-deterministic change that would break the workflows still running.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from temporalio.client import WorkflowHistory

if TYPE_CHECKING:
    from temporalio.client import Client

#: The workflow type whose runs are the applications' workflows.
WORKFLOW_TYPE = "IncentiveApproval"


class HistoryFileError(ValueError):
    """A file that holds no workflow history."""


async def connect(address: str, namespace: str) -> Client:
    """A Temporal client with the platform's data converter."""
    from temporalio.client import Client
    from temporalio.contrib.pydantic import pydantic_data_converter

    return await Client.connect(
        address, namespace=namespace, data_converter=pydantic_data_converter
    )


def _continued_from(history: WorkflowHistory) -> str | None:
    if not history.events:
        return None
    started = history.events[0].workflow_execution_started_event_attributes
    return started.continued_execution_run_id or None


async def fetch_application(client: Client, application_id: str) -> list[WorkflowHistory]:
    """Every run of the application's workflow, oldest first; ``[]`` when it has none.

    Reads by workflow id and run id only, so it needs no visibility store.
    """
    from temporalio.service import RPCError, RPCStatusCode

    runs: list[WorkflowHistory] = []
    run_id: str | None = None
    while True:
        handle = client.get_workflow_handle(application_id, run_id=run_id)
        try:
            history = await handle.fetch_history()
        except RPCError as exc:
            if exc.status is RPCStatusCode.NOT_FOUND:
                break
            raise
        runs.append(history)
        run_id = _continued_from(history)
        if run_id is None:
            break
    return runs[::-1]


async def fetch_all(client: Client) -> AsyncIterator[WorkflowHistory]:
    """The history of every run of every application workflow (Temporal's visibility)."""
    async for history in client.list_workflows(f'WorkflowType = "{WORKFLOW_TYPE}"').map_histories():
        yield history


def history_documents(histories: Iterable[WorkflowHistory]) -> list[dict[str, Any]]:
    """The bundle's ``workflows`` member: one object per run, the history in Temporal's JSON."""
    return [
        {"workflow_id": h.workflow_id, "run_id": h.run_id, "history": h.to_json_dict()}
        for h in histories
    ]


def histories_from_documents(documents: Sequence[Mapping[str, Any]]) -> list[WorkflowHistory]:
    """The runs of a bundle's ``workflows`` member."""
    out = []
    for position, document in enumerate(documents):
        try:
            out.append(WorkflowHistory.from_json(str(document["workflow_id"]), document["history"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise HistoryFileError(f"workflow history {position}: {exc}") from exc
    return out


def histories_from_file(path: Path) -> list[WorkflowHistory]:
    """Histories in a file: an export bundle's ``workflows``, or one Temporal history JSON
    (its workflow id taken from the file name), or a folder of such files."""
    if path.is_dir():
        return [h for file in sorted(path.glob("*.json")) for h in histories_from_file(file)]
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise HistoryFileError(f"{path}: {exc}") from exc
    if isinstance(document, dict) and isinstance(document.get("workflows"), list):
        return histories_from_documents(document["workflows"])
    if isinstance(document, dict) and isinstance(document.get("events"), list):
        try:
            return [WorkflowHistory.from_json(path.stem, document)]
        except (TypeError, ValueError) as exc:
            raise HistoryFileError(f"{path}: {exc}") from exc
    raise HistoryFileError(f"{path} holds no workflow history (nor a bundle with one)")


@dataclass(frozen=True)
class ReplayOutcome:
    """One run replayed against the current code; ``failure`` says why it did not replay."""

    workflow_id: str
    run_id: str
    events: int
    failure: str | None

    @property
    def ok(self) -> bool:
        return self.failure is None


async def replay(
    histories: AsyncIterator[WorkflowHistory],
    *,
    on_result: Callable[[ReplayOutcome], None] | None = None,
) -> list[ReplayOutcome]:
    """Replay every history against the current ``IncentiveApproval``; one outcome per run."""
    from temporalio.contrib.pydantic import pydantic_data_converter
    from temporalio.worker import Replayer

    from workflows.approval import IncentiveApproval

    replayer = Replayer(workflows=[IncentiveApproval], data_converter=pydantic_data_converter)
    outcomes: list[ReplayOutcome] = []
    async with replayer.workflow_replay_iterator(histories) as results:
        async for result in results:
            failure = result.replay_failure
            outcome = ReplayOutcome(
                workflow_id=result.history.workflow_id,
                run_id=result.history.run_id,
                events=len(result.history.events),
                failure=None if failure is None else f"{type(failure).__name__}: {failure}",
            )
            outcomes.append(outcome)
            if on_result is not None:
                on_result(outcome)
    return outcomes


async def iterate(histories: Iterable[WorkflowHistory]) -> AsyncIterator[WorkflowHistory]:
    """``histories`` as the async iterator :func:`replay` takes."""
    for history in histories:
        yield history
