"""A stand-in ``IncentiveApproval`` that only answers the ``decide`` update.

The desk addresses workflows by name and id, so this fake lets the desk's decision path be
tested on a real Temporal server without the real workflow's stages. Its validator refuses a
request whose comment reads ``refuse:<code>`` with ``ApplicationError(type=<code>)``, exactly
as the real validator reports a refusal; any other request is accepted, and a repeated
``request_id`` returns the first outcome.
"""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from contracts.v1.desk import DECIDE_UPDATE, ReviewDecisionOutcome, ReviewDecisionRequest

#: The comment prefix that makes the validator refuse with the code that follows it.
REFUSE = "refuse:"
#: The phase the fake reports after an accepted decision.
PHASE = "fake_review"


@workflow.defn(name="IncentiveApproval")
class FakeApproval:
    """Runs until the ``finish`` signal; records the decisions it accepted."""

    def __init__(self) -> None:
        self._finished = False
        self._outcomes: dict[str, ReviewDecisionOutcome] = {}
        self._requests: list[ReviewDecisionRequest] = []

    @workflow.run
    async def run(self, application_id: str) -> int:
        """Wait for ``finish``; return how many decisions were accepted."""
        del application_id
        await workflow.wait_condition(lambda: self._finished)
        return len(self._requests)

    @workflow.signal(name="finish")
    def finish(self) -> None:
        """End the workflow (so the desk meets a closed application)."""
        self._finished = True

    @workflow.query(name="requests")
    def requests(self) -> list[ReviewDecisionRequest]:
        """The accepted requests, in order (a repeated request id is listed once)."""
        return list(self._requests)

    @workflow.update(name=DECIDE_UPDATE)
    def decide(self, request: ReviewDecisionRequest) -> ReviewDecisionOutcome:
        """Accept the decision (once per request id)."""
        known = self._outcomes.get(request.request_id)
        if known is not None:
            return known
        outcome = ReviewDecisionOutcome(
            request_id=request.request_id,
            stage=request.stage,
            decision=request.decision,
            stage_closed=True,
            application_phase=PHASE,
        )
        self._outcomes[request.request_id] = outcome
        self._requests.append(request)
        return outcome

    @decide.validator
    def validate_decide(self, request: ReviewDecisionRequest) -> None:
        """Refuse on request, like the real validator does."""
        if request.request_id in self._outcomes:
            return  # a retry of an accepted request gets the first outcome
        if request.comment.startswith(REFUSE):
            code = request.comment[len(REFUSE) :].strip()
            raise ApplicationError(
                f"Refused by the fake workflow: {code}.", type=code, non_retryable=True
            )
