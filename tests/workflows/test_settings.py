"""Worker settings: the review rules come from the environment into each run's input."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from workflows.inputs import ApprovalPolicy
from workflows.settings import Settings


def test_defaults() -> None:
    settings = Settings()
    assert settings.review_url == "http://127.0.0.1:8002"
    assert settings.approval_policy() == ApprovalPolicy()
    policy = settings.approval_policy()
    assert (policy.sla_reminder_days, policy.sla_escalation_days) == (7, 14)
    assert (policy.committee_required, policy.committee_members) == (2, 3)
    assert policy.information_timeout_days == 30


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INCENTIVES_WORKER_REVIEW_URL", "http://review:8002")
    monkeypatch.setenv("INCENTIVES_WORKER_SLA_REMINDER_DAYS", "3")
    monkeypatch.setenv("INCENTIVES_WORKER_SLA_ESCALATION_DAYS", "5")
    monkeypatch.setenv("INCENTIVES_WORKER_COMMITTEE_REQUIRED", "3")
    monkeypatch.setenv("INCENTIVES_WORKER_COMMITTEE_MEMBERS", "5")
    monkeypatch.setenv("INCENTIVES_WORKER_INFORMATION_TIMEOUT_DAYS", "10")
    settings = Settings()
    assert settings.review_url == "http://review:8002"
    assert settings.approval_policy() == ApprovalPolicy(
        sla_reminder_days=3,
        sla_escalation_days=5,
        committee_required=3,
        committee_members=5,
        information_timeout_days=10,
    )


@pytest.mark.parametrize(
    "bad",
    [
        {"sla_reminder_days": 14, "sla_escalation_days": 7},
        {"committee_required": 4, "committee_members": 3},
        {"committee_required": 0},
    ],
)
def test_an_inconsistent_policy_is_refused_at_start(bad: dict[str, int]) -> None:
    with pytest.raises(ValidationError):
        Settings(**bad)  # type: ignore[arg-type]
