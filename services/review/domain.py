"""The review desk's rules, with no I/O: task states, SLA states and refusals.

The inbox is a projection of events that may arrive late, twice or out of order (review events
and approval events travel on different topics). Every fact about a task is therefore kept as
"the latest of its kind, by the time it happened" and the task's status is *derived* from the
facts, never stepped through by arrival order:

- the assignment opens a **round** (its ``assigned_at``); a re-assignment of the same task with
  a later ``assigned_at`` (after an information request, say) opens a new round;
- a decision, reminder, escalation or cancellation counts only for the round it happened in
  (its time is not before the round's ``assigned_at``); older ones are history;
- the application's end (approved, rejected, withdrawn) closes whatever is open, whichever of
  the two arrived first; if it ends twice (a withdrawal after the approval), the earliest end
  is the one the inbox shows.

Applying the same fact twice, or two facts in either order, gives the same task: the projection
cannot be corrupted by redelivery or reordering.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import Final

from contracts.v1.common import Decision
from contracts.v1.desk import DecisionRefusal


class TaskStatus(StrEnum):
    """Where a review task stands."""

    OPEN = "open"
    """Assigned and waiting for the reviewer's decision."""
    DECIDED = "decided"
    """The reviewer decided it (approve, reject or request information)."""
    CANCELLED = "cancelled"
    """The workflow withdrew it (quorum reached without it, stage closed, withdrawal)."""
    CLOSED = "closed"
    """The application ended (approved, rejected or withdrawn) while the task was open."""


class SlaState(StrEnum):
    """How a task stands against its SLA (computed against now, or its end for finished tasks)."""

    ON_TIME = "on_time"
    REMINDER_SENT = "reminder_sent"
    ESCALATED = "escalated"
    OVERDUE = "overdue"


class ApplicationOutcome(StrEnum):
    """How an application's journey ended, as far as the desk is concerned."""

    APPROVED = "approved"
    REJECTED = "rejected"
    WITHDRAWN = "withdrawn"


#: Event types that end an application, and the outcome each means.
OUTCOME_OF_EVENT: Final[Mapping[str, ApplicationOutcome]] = {
    "application.approved": ApplicationOutcome.APPROVED,
    "application.rejected": ApplicationOutcome.REJECTED,
    "application.withdrawn": ApplicationOutcome.WITHDRAWN,
}


# --- task facts and the derived status -----------------------------------------------------------


def _newer(current: datetime | None, candidate: datetime) -> bool:
    """Whether ``candidate`` replaces ``current`` (last writer by event time wins)."""
    return current is None or candidate > current


def _in_round(at: datetime | None, assigned_at: datetime | None) -> bool:
    """Whether a fact at ``at`` belongs to the round opened at ``assigned_at``.

    Before the assignment is known every fact counts provisionally; the assignment, when it
    arrives, decides.
    """
    return at is not None and (assigned_at is None or at >= assigned_at)


@dataclass(frozen=True)
class TaskFacts:
    """The timestamps of what is known about one task; each is the latest of its kind."""

    assigned_at: datetime | None = None
    due_at: datetime | None = None
    reminded_at: datetime | None = None
    escalated_at: datetime | None = None
    decided_at: datetime | None = None
    information_requested_at: datetime | None = None
    cancelled_at: datetime | None = None
    #: When the application ended; final, so it counts whatever the round.
    closed_at: datetime | None = None

    # --- applying facts (each returns the new facts and whether the fact was news) ------------

    def assigned(self, at: datetime, due_at: datetime) -> tuple[TaskFacts, bool]:
        """A ``review.task_assigned``: a later one opens a new round; an older one is history."""
        if not _newer(self.assigned_at, at):
            return self, False
        return replace(self, assigned_at=at, due_at=due_at), True

    def reminded(self, at: datetime) -> tuple[TaskFacts, bool]:
        """A ``review.reminder_due``."""
        if not _newer(self.reminded_at, at):
            return self, False
        return replace(self, reminded_at=at), True

    def escalated(self, at: datetime) -> tuple[TaskFacts, bool]:
        """A ``review.escalated``."""
        if not _newer(self.escalated_at, at):
            return self, False
        return replace(self, escalated_at=at), True

    def decided(self, at: datetime) -> tuple[TaskFacts, bool]:
        """A ``review.decision_recorded``."""
        if not _newer(self.decided_at, at):
            return self, False
        return replace(self, decided_at=at), True

    def information_requested(self, at: datetime) -> tuple[TaskFacts, bool]:
        """A ``review.information_requested`` by this task's reviewer."""
        if not _newer(self.information_requested_at, at):
            return self, False
        return replace(self, information_requested_at=at), True

    def cancelled(self, at: datetime) -> tuple[TaskFacts, bool]:
        """A ``review.task_cancelled``."""
        if not _newer(self.cancelled_at, at):
            return self, False
        return replace(self, cancelled_at=at), True

    def closed(self, at: datetime) -> tuple[TaskFacts, bool]:
        """The application ended. The earliest end counts (a firm may still withdraw an
        approved application; the review ended with the approval, whichever arrives first)."""
        if self.closed_at is not None and self.closed_at <= at:
            return self, False
        return replace(self, closed_at=at), True

    # --- what counts in the current round ------------------------------------------------------

    @property
    def is_assigned(self) -> bool:
        """Whether the assignment is known (tasks are shown only then)."""
        return self.assigned_at is not None

    @property
    def decision_counts(self) -> bool:
        """Whether the latest decision belongs to the current round."""
        return _in_round(self.decided_at, self.assigned_at)

    @property
    def information_request_counts(self) -> bool:
        """Whether the latest information request belongs to the current round."""
        return _in_round(self.information_requested_at, self.assigned_at)

    @property
    def reminder_counts(self) -> bool:
        """Whether a reminder was sent in the current round."""
        return _in_round(self.reminded_at, self.assigned_at)

    @property
    def escalation_counts(self) -> bool:
        """Whether the task was escalated in the current round."""
        return _in_round(self.escalated_at, self.assigned_at)

    @property
    def cancellation_counts(self) -> bool:
        """Whether the task was cancelled in the current round."""
        return _in_round(self.cancelled_at, self.assigned_at)

    @property
    def status(self) -> TaskStatus:
        """The task's status: decided > cancelled > closed > open.

        The reviewer's own act wins: a decided task stays decided when its application later
        ends. A decision by information request counts as decided: the stage is paused, and a
        re-assignment opens the next round.
        """
        if self.decision_counts or self.information_request_counts:
            return TaskStatus.DECIDED
        if self.cancellation_counts:
            return TaskStatus.CANCELLED
        if self.closed_at is not None:
            return TaskStatus.CLOSED
        return TaskStatus.OPEN

    @property
    def ended_at(self) -> datetime | None:
        """When the task stopped needing a decision; ``None`` while it is open."""
        status = self.status
        if status is TaskStatus.DECIDED:
            times = [
                t
                for t, counts in (
                    (self.decided_at, self.decision_counts),
                    (self.information_requested_at, self.information_request_counts),
                )
                if counts and t is not None
            ]
            return min(times) if times else None
        if status is TaskStatus.CANCELLED:
            return self.cancelled_at
        if status is TaskStatus.CLOSED:
            return self.closed_at
        return None

    def sla_state(self, now: datetime) -> SlaState:
        """The SLA state against ``now`` (or, for a finished task, against when it finished).

        Escalated beats overdue: once a supervisor has the task, that is what matters. A task
        past its due date and not escalated (yet) is overdue; a reminded one is
        ``reminder_sent``; anything else is on time.
        """
        if self.escalation_counts:
            return SlaState.ESCALATED
        reference = self.ended_at or now
        if self.due_at is not None and reference >= self.due_at:
            return SlaState.OVERDUE
        if self.reminder_counts:
            return SlaState.REMINDER_SENT
        return SlaState.ON_TIME


# --- decisions -----------------------------------------------------------------------------------

#: The HTTP status each refusal of the ``decide`` update is answered with.
REFUSAL_STATUS: Final[Mapping[DecisionRefusal, int]] = {
    DecisionRefusal.WRONG_ROLE: 403,
    DecisionRefusal.NOT_ASSIGNED: 403,
    DecisionRefusal.CONFLICT_OF_INTEREST: 403,
    DecisionRefusal.SEPARATION_OF_DUTIES: 403,
    DecisionRefusal.STAGE_NOT_OPEN: 409,
    DecisionRefusal.DUPLICATE_DECISION: 409,
    DecisionRefusal.INVALID_REQUEST: 422,
    DecisionRefusal.APPLICATION_CLOSED: 409,
}

#: The problem title of each refusal.
REFUSAL_TITLE: Final[Mapping[DecisionRefusal, str]] = {
    DecisionRefusal.WRONG_ROLE: "Reviewer lacks the role for this stage",
    DecisionRefusal.NOT_ASSIGNED: "Reviewer is not assigned to this task",
    DecisionRefusal.CONFLICT_OF_INTEREST: "Conflict of interest with the firm",
    DecisionRefusal.SEPARATION_OF_DUTIES: "Reviewer already decided another stage",
    DecisionRefusal.STAGE_NOT_OPEN: "Stage is not open for decisions",
    DecisionRefusal.DUPLICATE_DECISION: "Decision already recorded",
    DecisionRefusal.INVALID_REQUEST: "Decision request is invalid",
    DecisionRefusal.APPLICATION_CLOSED: "The application has ended",
}


def parse_refusal(code: str | None) -> DecisionRefusal | None:
    """The refusal named by an error type, or ``None`` if it is not one of ours."""
    if code is None:
        return None
    try:
        return DecisionRefusal(code)
    except ValueError:
        return None


def decision_request_id(task_id: str, reviewer_id: str, idempotency_key: str) -> str:
    """The ``request_id`` of a decision: stable for one reviewer, task and Idempotency-Key.

    A retried request (same key) reaches the workflow with the same id and gets the first
    outcome back; the key is scoped to the reviewer and the task, so two reviewers (or two
    tasks) can never collide on a key.
    """
    digest = hashlib.sha256("\x1f".join((task_id, reviewer_id, idempotency_key)).encode())
    return f"dec_{digest.hexdigest()[:40]}"


def reassignment_request_id(task_id: str, supervisor_id: str, idempotency_key: str) -> str:
    """The ``request_id`` of a reassignment, stable for one supervisor, task and key."""
    digest = hashlib.sha256("\x1f".join((task_id, supervisor_id, idempotency_key)).encode())
    return f"rea_{digest.hexdigest()[:40]}"


def decision_body_problem(decision: Decision, requested_fields: Iterable[str]) -> str | None:
    """Why a decision body is inconsistent, or ``None`` when it is fine."""
    if list(requested_fields) and decision is not Decision.REQUEST_INFORMATION:
        return "requested_fields may only be given with the decision request_information"
    return None
