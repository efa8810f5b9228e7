"""Settings of the workflow worker (env prefix ``INCENTIVES_WORKER_``)."""

from __future__ import annotations

from typing import ClassVar, Self

from pydantic import Field, model_validator

from services.kit.settings import ServiceSettings, service_settings_config
from workflows.approval import TASK_QUEUE
from workflows.inputs import ApprovalPolicy


class Settings(ServiceSettings):
    """Worker settings. Common settings (broker, Temporal, var dir, JWT key) come from
    ``INCENTIVES_*``.

    The worker's own database holds only the bridge's processed-message marks and its outbox.
    The review rules (SLA days, committee N of M, information timeout) are copied into each new
    workflow's input, so changing them affects applications submitted afterwards only.
    """

    model_config = service_settings_config("worker")
    service_name: ClassVar[str] = "worker"

    port: int = Field(
        default=8007,
        ge=0,
        le=65535,
        description="HTTP port (health and AsyncAPI docs).",
        examples=[8007],
    )
    task_queue: str = Field(
        default=TASK_QUEUE,
        description="Temporal task queue polled by the worker and used to start workflows.",
        examples=[TASK_QUEUE],
    )
    temporal_namespace: str = Field(
        default="default", description="Temporal namespace.", examples=["default"]
    )
    temporal_metrics_address: str = Field(
        default="",
        description=(
            "Where the Temporal SDK serves its runtime metrics (`host:port`); the worker's "
            "`/metrics` includes them. Empty: a free port on 127.0.0.1."
        ),
        examples=["", "127.0.0.1:9464"],
    )
    review_url: str = Field(
        default="http://127.0.0.1:8002",
        description=(
            "Base URL of the review desk; the assignment activity calls its "
            "`/internal/v1/candidates` endpoint with a token signed by INCENTIVES_JWT_SECRET."
        ),
        examples=["http://127.0.0.1:8002", "http://review:8002"],
    )
    review_timeout_seconds: float = Field(
        default=10.0, gt=0, le=300, description="HTTP timeout of one desk call.", examples=[10]
    )
    sla_reminder_days: int = Field(
        default=7,
        ge=1,
        le=365,
        description="Days after a task's assignment when a reminder event is emitted.",
        examples=[7],
    )
    sla_escalation_days: int = Field(
        default=14,
        ge=1,
        le=365,
        description=(
            "Days after a task's assignment when it escalates to a supervisor (its due date); "
            "must exceed the reminder days."
        ),
        examples=[14],
    )
    sla_day_seconds: int = Field(
        default=86_400,
        ge=1,
        le=86_400,
        description=(
            "Seconds in one day of the SLA timers: 86400. Shorter only to watch reminders and "
            "escalations happen in a demo or a test (e.g. 1: a 14-day escalation in 14 s)."
        ),
        examples=[86400],
    )
    committee_required: int = Field(
        default=2, ge=1, le=50, description="Committee approvals needed (N of M).", examples=[2]
    )
    committee_members: int = Field(
        default=3, ge=1, le=50, description="Committee members asked (M).", examples=[3]
    )
    information_timeout_days: int = Field(
        default=30,
        ge=1,
        le=365,
        description="Days the firm has to amend after an information request before withdrawal.",
        examples=[30],
    )
    assignment_retry_minutes: int = Field(
        default=60,
        ge=1,
        le=7 * 24 * 60,
        description="Wait before asking the desk again when no eligible reviewer is available.",
        examples=[60],
    )
    offer_days: int = Field(
        default=14,
        ge=1,
        le=365,
        description="Days the firm has to answer its offer before it lapses.",
        examples=[14],
    )
    fast_track_validity_days: int = Field(
        default=365,
        ge=1,
        le=3650,
        description="How long an approved fast-track item is granted for, from acceptance.",
        examples=[365],
    )
    budget_wait_days: int = Field(
        default=365,
        ge=1,
        le=3650,
        description=(
            "Days an application left unfunded by a budget shortfall waits for a top-up before"
            " it stops waiting."
        ),
        examples=[365],
    )
    tranche_schedule: str = Field(
        default="signing:40,milestone 1:30,milestone 2:30",
        description=(
            "Tranche shares of an award, `name:percent` separated by commas, adding up to 100; "
            "the first is paid on signing, each later one when its milestone is verified."
        ),
        examples=["signing:40,milestone 1:30,milestone 2:30"],
    )
    grant_budget: str = Field(
        default="grant",
        description="The incentive type whose budget of the current fiscal year a grant reserves.",
        examples=["grant"],
    )

    @model_validator(mode="after")
    def _valid_policy(self) -> Self:
        self.approval_policy()  # refuse an inconsistent policy at start, not per workflow
        return self

    def approval_policy(self) -> ApprovalPolicy:
        """The review rules copied into each new workflow's input."""
        return ApprovalPolicy(
            sla_reminder_days=self.sla_reminder_days,
            sla_escalation_days=self.sla_escalation_days,
            sla_day_seconds=self.sla_day_seconds,
            committee_required=self.committee_required,
            committee_members=self.committee_members,
            information_timeout_days=self.information_timeout_days,
            assignment_retry_minutes=self.assignment_retry_minutes,
            offer_days=self.offer_days,
            fast_track_validity_days=self.fast_track_validity_days,
            budget_wait_days=self.budget_wait_days,
            tranche_schedule=self.tranche_schedule,
            grant_budget=self.grant_budget,
        )
