"""How the desk answers a failed update RPC to Temporal (``rpc_problem``).

The statuses and messages are those the Temporal server sends; the real-server cases (no
workflow, an ended one, nobody running it) are in ``tests/review/test_decisions.py``.
"""

from __future__ import annotations

import pytest
from temporalio.service import RPCError, RPCStatusCode

from services.kit.errors import DependencyUnavailable
from services.review.temporal import DeskProblem, rpc_problem

CONTEXT = {"application_id": "app_1", "task_id": "task_1"}


def problem_for(status: RPCStatusCode, message: str) -> Exception:
    return rpc_problem(RPCError(message, status, b""), "127.0.0.1:7233", dict(CONTEXT))


def test_a_run_whose_workflow_task_is_being_retried_is_worth_retrying() -> None:
    # The server's NewWorkflowNotReady, after a few failed or timed-out workflow task attempts
    # (a worker killed mid-task); the update goes through once a retry succeeds.
    answer = problem_for(
        RPCStatusCode.FAILED_PRECONDITION,
        "Unable to perform workflow execution update due to Workflow Task in failed state.",
    )
    assert isinstance(answer, DependencyUnavailable)
    assert "retry with the same Idempotency-Key" in str(answer)
    assert "app_1" in str(answer)


def test_another_failed_precondition_is_still_the_workflows_error() -> None:
    answer = problem_for(RPCStatusCode.FAILED_PRECONDITION, "update rejected for another reason")
    assert isinstance(answer, DeskProblem)
    assert answer.status == 502
    assert answer.code == "workflow_error"


@pytest.mark.parametrize(
    "status", [RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.ABORTED]
)
def test_an_unreachable_temporal_is_worth_retrying(status: RPCStatusCode) -> None:
    assert isinstance(problem_for(status, "connection refused"), DependencyUnavailable)


def test_an_ended_run_is_application_closed_and_no_run_is_not_found() -> None:
    closed = problem_for(RPCStatusCode.NOT_FOUND, "workflow execution already completed")
    missing = problem_for(RPCStatusCode.NOT_FOUND, "workflow not found for ID: app_1")
    assert isinstance(closed, DeskProblem)
    assert isinstance(missing, DeskProblem)
    assert (closed.status, closed.code) == (409, "application_closed")
    assert (missing.status, missing.code) == (404, "workflow_not_found")
