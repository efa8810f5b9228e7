"""The desk's Temporal side: one client, connected in the background, and the ``decide`` update.

The desk starts serving before Temporal answers (its inbox does not need it): the client
connects in the background with one log line while the server is unreachable, ``/health``
reports ``temporal`` as failing meanwhile, and a decision gets a 503 problem. Temporal's own
errors become the desk's problems here:

- a validator refusal (``WorkflowUpdateFailedError`` caused by an ``ApplicationError`` whose
  ``type`` is a :class:`~contracts.v1.desk.DecisionRefusal`) → 403/409/422 with the reason;
- no such workflow → 404; a workflow that has already ended → 409;
- Temporal unreachable, or no answer within the decision timeout → 503.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta
from typing import Any, TypeVar

from pydantic import BaseModel
from temporalio.client import (
    Client,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from contracts.v1.desk import (
    DECIDE_UPDATE,
    REASSIGN_UPDATE,
    DecisionRefusal,
    ReviewDecisionOutcome,
    ReviewDecisionRequest,
    TaskReassigned,
    TaskReassignment,
)
from services.kit import tracing
from services.kit.errors import DependencyUnavailable
from services.kit.logging import get_logger
from services.kit.retry import wait_until_available
from services.review.domain import REFUSAL_STATUS, REFUSAL_TITLE, parse_refusal

log = get_logger(__name__)

#: What an update returns.
Outcome = TypeVar("Outcome", bound=BaseModel)

#: How long the health check waits for Temporal's own health answer.
HEALTH_TIMEOUT = timedelta(seconds=2)


class DeskProblem(Exception):
    """An RFC 9457 problem the desk answers with, under its own reason code.

    The code becomes the problem ``type`` (``urn:incentives:problem:<code>``) and the ``reason``
    member, so a client can branch on it without parsing the detail.
    """

    def __init__(self, status: int, code: str, title: str, detail: str, **extensions: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.title = title
        self.detail = detail
        self.extensions = extensions


class TemporalDesk:
    """The desk's Temporal client: background connection, health, and decisions."""

    def __init__(
        self,
        address: str,
        namespace: str,
        *,
        decision_timeout: float,
        retry_interval: float = 1.0,
    ) -> None:
        self.address = address
        self.namespace = namespace
        self.decision_timeout = decision_timeout
        self.retry_interval = retry_interval
        self.client: Client | None = None
        self._task: asyncio.Task[None] | None = None

    # --- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        """Connect in the background; the desk serves meanwhile."""
        self._task = asyncio.create_task(self._connect(), name="review-temporal-connect")

    async def _connect(self) -> None:
        # A desk started before Temporal is a normal start-up order: one line, not an error.
        self.client = await wait_until_available(
            lambda: Client.connect(
                self.address,
                namespace=self.namespace,
                data_converter=pydantic_data_converter,
                # The decision's trace goes on into the workflow's update, when tracing is on.
                interceptors=tracing.temporal_interceptors(),
            ),
            name=f"Temporal {self.address}",
            interval=self.retry_interval,
            recovered=None,
        )
        log.info("temporal connected", address=self.address, namespace=self.namespace)

    async def stop(self) -> None:
        """Stop connecting and drop the client before the process exits.

        The Python SDK has no explicit close: the connection goes with the last reference, and
        it must go while the interpreter is whole (a live Temporal core at exit can abort the
        process, temporalio sdk-python #300).
        """
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.client = None

    # --- health ----------------------------------------------------------------------------------

    async def health(self) -> str | None:
        """The ``temporal`` check of ``/health``."""
        client = self.client
        if client is None:
            raise DependencyUnavailable(f"Temporal {self.address} not connected yet")
        if not await client.service_client.check_health(timeout=HEALTH_TIMEOUT):
            raise DependencyUnavailable(f"Temporal {self.address} not serving")
        return f"namespace {self.namespace}"

    # --- decisions -------------------------------------------------------------------------------

    async def decide(
        self, application_id: str, request: ReviewDecisionRequest
    ) -> ReviewDecisionOutcome:
        """Send the ``decide`` update to the application's workflow and return its outcome.

        The update id is the request id, so Temporal itself also answers a retried request with
        the first outcome.
        """
        context = {"application_id": application_id, "task_id": request.task_id}
        return await self._update(
            application_id,
            DECIDE_UPDATE,
            request,
            request.request_id,
            ReviewDecisionOutcome,
            context,
        )

    async def reassign(self, application_id: str, request: TaskReassignment) -> TaskReassigned:
        """Send a supervisor's ``reassign`` update; its refusals are the decisions' problems."""
        context = {"application_id": application_id, "task_id": request.task_id}
        return await self._update(
            application_id, REASSIGN_UPDATE, request, request.request_id, TaskReassigned, context
        )

    async def _update(
        self,
        application_id: str,
        name: str,
        request: BaseModel,
        update_id: str,
        result_type: type[Outcome],
        context: dict[str, Any],
    ) -> Outcome:
        client = self.client
        if client is None:
            raise DependencyUnavailable(
                f"Temporal {self.address} is not reachable yet; retry with the same Idempotency-Key"
            )
        handle = client.get_workflow_handle(application_id)
        try:
            async with asyncio.timeout(self.decision_timeout):
                outcome = await handle.execute_update(
                    name,
                    request,
                    id=update_id,
                    result_type=result_type,
                    rpc_timeout=timedelta(seconds=self.decision_timeout),
                )
        except WorkflowUpdateFailedError as exc:
            raise refusal_problem(exc.cause, context) from exc
        except RPCError as exc:
            raise rpc_problem(exc, self.address, context) from exc
        except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError) as exc:
            raise DependencyUnavailable(
                f"the workflow of {application_id} did not answer within "
                f"{self.decision_timeout:g}s; retry with the same Idempotency-Key"
            ) from exc
        if not isinstance(outcome, result_type):  # the converter honours result_type
            outcome = result_type.model_validate(outcome)
        return outcome


def refusal_problem(cause: BaseException | None, context: dict[str, Any]) -> DeskProblem:
    """The problem for a failed ``decide`` update."""
    error_type = cause.type if isinstance(cause, ApplicationError) else None
    message = cause.message if isinstance(cause, ApplicationError) else str(cause or "")
    refusal = parse_refusal(error_type)
    if refusal is None:
        # Not one of the agreed refusals: the workflow failed the update for a reason of its
        # own (a bug, an unreadable request). The reviewer cannot fix that by retrying.
        log.error("decide update failed unexpectedly", error_type=error_type, error=message)
        return DeskProblem(
            502,
            "workflow_error",
            "The workflow could not process the decision",
            message or "the workflow failed the update",
            reason="workflow_error",
            **context,
        )
    return DeskProblem(
        REFUSAL_STATUS[refusal],
        refusal.value,
        REFUSAL_TITLE[refusal],
        message or REFUSAL_TITLE[refusal],
        reason=refusal.value,
        **context,
    )


#: How Temporal words the refusal of an update while the run's workflow task is being retried.
WORKFLOW_TASK_FAILING = "Workflow Task in failed state"


def rpc_problem(exc: RPCError, address: str, context: dict[str, Any]) -> Exception:
    """The problem (or retryable error) for a failed RPC to Temporal."""
    application_id = context["application_id"]
    if exc.status is RPCStatusCode.NOT_FOUND:
        if "completed" in exc.message.lower() or "closed" in exc.message.lower():
            # The same answer the workflow's validator gives while it finishes (issue: a late
            # committee vote must read the same whenever it arrives).
            closed = DecisionRefusal.APPLICATION_CLOSED
            return DeskProblem(
                REFUSAL_STATUS[closed],
                closed.value,
                REFUSAL_TITLE[closed],
                f"application {application_id} has ended and is no longer open for decisions",
                reason=closed.value,
                **context,
            )
        return DeskProblem(
            404,
            "workflow_not_found",
            "No workflow for this application",
            f"no IncentiveApproval workflow runs for application {application_id}",
            reason="workflow_not_found",
            **context,
        )
    if exc.status is RPCStatusCode.FAILED_PRECONDITION and WORKFLOW_TASK_FAILING in exc.message:
        # The run's workflow task failed and the server retries it (a signal that arrived while
        # a task was completing, a worker killed mid-task): the update goes through once a
        # retry succeeds, so the reviewer may send the same request again.
        return DependencyUnavailable(
            f"the workflow of {application_id} is retrying its last step; retry with the same "
            "Idempotency-Key"
        )
    if exc.status in {
        RPCStatusCode.UNAVAILABLE,
        RPCStatusCode.DEADLINE_EXCEEDED,
        RPCStatusCode.CANCELLED,
        RPCStatusCode.RESOURCE_EXHAUSTED,
        RPCStatusCode.ABORTED,
    }:
        return DependencyUnavailable(
            f"Temporal {address} is unavailable ({exc.status.name.lower()}); retry with the "
            "same Idempotency-Key"
        )
    log.error("decide update RPC failed", status=exc.status.name, error=exc.message)
    return DeskProblem(
        502,
        "workflow_error",
        "Temporal refused the request",
        f"{exc.status.name}: {exc.message}",
        reason="workflow_error",
        **context,
    )
