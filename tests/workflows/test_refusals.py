"""The ``decide`` validator's rules as a pure function: each refusal on its own, then the order.

Every case starts from one decision that passes (Tanaka approves the open technical task) and
breaks exactly one rule, so a test fails if a rule is dropped, merged into another, or checked
for the wrong reason. The time-skipping tests in ``test_validators.py`` show the same refusals
through the real workflow.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from contracts.conflicts import firm_organisations
from contracts.v1.common import Decision, ReviewStage
from contracts.v1.desk import DecisionRefusal, ReviewDecisionRequest, ReviewerProfile
from contracts.v1.desk import ReviewerRole as R
from tests.workflows.scenarios import HADDAD, MEYER, SILVA, TANAKA, content
from workflows import policy
from workflows.state import Phase, StageState, StageStatus, Task, TaskStatus

T, S = ReviewStage.TECHNICAL, ReviewStage.SECURITY
AT = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
ORGS = firm_organisations(content())


def task(reviewer: str, stage: ReviewStage, **changes: Any) -> Task:
    base = Task(
        task_id=f"task_{stage.value}_{reviewer}",
        stage=stage,
        reviewer_id=reviewer,
        round=0,
        assigned_at=AT,
        due_at=AT,
        assigned_event_id="00000000-0000-0000-0000-000000000001",
    )
    return base.model_copy(update=changes)


def decided(t: Task, decision: Decision = Decision.APPROVE) -> Task:
    return t.model_copy(
        update={
            "status": TaskStatus.DECIDED,
            "decision": decision,
            "comment": "Fine.",
            "decided_at": AT,
            "request_id": "dec_earlier",
        }
    )


TANAKA_TASK = task(TANAKA, T)
SILVA_TASK = task(SILVA, S)
TANAKA_PROFILE = ReviewerProfile(
    reviewer_id=TANAKA, name="Tanaka", roles=[R.TECHNICAL], affiliations=["Kyoto University"]
)


@dataclass
class Case:
    """One decision and the run it is made in; every field starts valid."""

    request: ReviewDecisionRequest = field(
        default_factory=lambda: ReviewDecisionRequest(
            request_id="dec_1",
            task_id=TANAKA_TASK.task_id,
            stage=T,
            reviewer_id=TANAKA,
            token_roles=[R.TECHNICAL],
            decision=Decision.APPROVE,
            comment="Sound.",
        )
    )
    phase: Phase = Phase.TECHNICAL_SECURITY_REVIEW
    stages: dict[ReviewStage, StageState] = field(
        default_factory=lambda: {
            stage: StageState(
                stage=stage,
                status=StageStatus.OPEN if stage in (T, S) else StageStatus.PENDING,
                reviewers={T: [TANAKA], S: [SILVA]}.get(stage, []),
            )
            for stage in ReviewStage
        }
    )
    tasks: list[Task] = field(default_factory=lambda: [TANAKA_TASK, SILVA_TASK])
    profiles: dict[str, ReviewerProfile] = field(default_factory=lambda: {TANAKA: TANAKA_PROFILE})

    def refusal(self) -> policy.Refusal | None:
        return policy.refusal(
            self.request,
            policy.Application(
                phase=self.phase,
                stages=self.stages,
                tasks={t.task_id: t for t in self.tasks},
                profiles=self.profiles,
                organisations=ORGS,
            ),
        )

    def ask(self, **changes: Any) -> None:
        self.request = self.request.model_copy(update=changes)


def _invalid_request(c: Case) -> None:
    c.ask(requested_fields=["commitments.training"])


def _application_closed(c: Case) -> None:
    c.phase = Phase.APPROVED


def _wrong_role(c: Case) -> None:
    c.ask(token_roles=[R.COMMITTEE])


def _conflict_by_name(c: Case) -> None:
    # The variant the workflow's old normaliser let through.
    c.profiles[TANAKA] = TANAKA_PROFILE.model_copy(
        update={"affiliations": ["Acme Vision-AI GmbH."]}
    )


def _conflict_by_register(c: Case) -> None:
    c.profiles[TANAKA] = ReviewerProfile.model_validate(
        {
            **TANAKA_PROFILE.model_dump(),
            "declared_identifiers": [{"register_country": "DE", "register_number": "hrb123456"}],
        }
    )


def _separation_of_duties(c: Case) -> None:
    c.tasks.append(decided(task(TANAKA, S, task_id="task_security_earlier")))


def _duplicate_decision(c: Case) -> None:
    c.tasks = [decided(TANAKA_TASK), SILVA_TASK]


def _stage_not_open(c: Case) -> None:
    c.stages[T] = replace_stage(c.stages[T], StageStatus.PAUSED)


def _not_assigned(c: Case) -> None:
    c.tasks = [task(HADDAD, T), SILVA_TASK]
    c.ask(task_id=c.tasks[0].task_id)


def replace_stage(state: StageState, status: StageStatus) -> StageState:
    return state.model_copy(update={"status": status})


BREAKS: list[tuple[Callable[[Case], None], DecisionRefusal]] = [
    (_invalid_request, DecisionRefusal.INVALID_REQUEST),
    (_application_closed, DecisionRefusal.APPLICATION_CLOSED),
    (_wrong_role, DecisionRefusal.WRONG_ROLE),
    (_conflict_by_name, DecisionRefusal.CONFLICT_OF_INTEREST),
    (_conflict_by_register, DecisionRefusal.CONFLICT_OF_INTEREST),
    (_separation_of_duties, DecisionRefusal.SEPARATION_OF_DUTIES),
    (_duplicate_decision, DecisionRefusal.DUPLICATE_DECISION),
    (_stage_not_open, DecisionRefusal.STAGE_NOT_OPEN),
    (_not_assigned, DecisionRefusal.NOT_ASSIGNED),
]


def test_the_starting_decision_passes() -> None:
    assert Case().refusal() is None


def test_every_refusal_code_has_a_case() -> None:
    assert {code for _, code in BREAKS} == set(DecisionRefusal)


@pytest.mark.parametrize(("breaking", "code"), BREAKS, ids=[b.__name__[1:] for b, _ in BREAKS])
def test_breaking_one_rule_gives_its_refusal(
    breaking: Callable[[Case], None], code: DecisionRefusal
) -> None:
    case = Case()
    breaking(case)
    refused = case.refusal()
    assert refused is not None
    assert refused.code is code
    assert refused.message


def test_the_messages_say_why() -> None:
    case = Case()
    _conflict_by_name(case)
    refused = case.refusal()
    assert refused is not None
    assert refused.message == (
        f"{TANAKA} declares an affiliation or ownership interest in Acme Vision AI GmbH (the "
        "applicant or its parent company) and may not decide this application."
    )
    case = Case()
    _application_closed(case)
    refused = case.refusal()
    assert refused is not None
    assert refused.message == (
        "The application has ended (approved); no stage of it takes decisions any more."
    )


@pytest.mark.parametrize("first", range(len(BREAKS)))
def test_the_most_fundamental_problem_is_reported_first(first: int) -> None:
    """With every rule from ``first`` on broken, the refusal is the one of ``first``."""
    case = Case()
    for breaking, _ in reversed(BREAKS[first:]):
        breaking(case)
    refused = case.refusal()
    assert refused is not None
    assert refused.code is BREAKS[first][1]


def test_an_ended_application_refuses_whatever_else_is_wrong() -> None:
    """The desk answers application_closed once the run has completed, so the validator does too
    while the run is still publishing its last events (a late committee vote)."""
    for phase in (Phase.APPROVED, Phase.REJECTED, Phase.WITHDRAWN):
        case = Case(phase=phase)
        case.stages = {s: replace_stage(st, StageStatus.APPROVED) for s, st in case.stages.items()}
        _wrong_role(case)
        _conflict_by_name(case)
        refused = case.refusal()
        assert refused is not None
        assert refused.code is DecisionRefusal.APPLICATION_CLOSED


def test_a_reviewer_asked_again_after_an_information_request_is_no_duplicate() -> None:
    case = Case()
    earlier = decided(TANAKA_TASK, Decision.REQUEST_INFORMATION)
    fresh = task(TANAKA, T, task_id="task_technical_round1", round=1)
    case.tasks = [earlier.model_copy(update={"task_id": "task_technical_round0"}), fresh]
    case.ask(task_id=fresh.task_id)
    assert case.refusal() is None


# --- a supervisor deciding an escalated task in its reviewer's place --------------------------

MEYER_PROFILE = ReviewerProfile(reviewer_id=MEYER, name="Meyer", roles=[R.SUPERVISOR])


def in_place(*tasks: Task, **changes: Any) -> Case:
    """Meyer, a supervisor, decides Tanaka's escalated technical task."""
    escalated = TANAKA_TASK.model_copy(update={"escalated_at": AT})
    case = Case(tasks=[escalated, SILVA_TASK, *tasks])
    case.ask(
        **{"reviewer_id": MEYER, "token_roles": [R.SUPERVISOR], "supervisor": MEYER_PROFILE}
        | changes
    )
    return case


def test_a_supervisor_decides_an_escalated_task_without_the_stages_role() -> None:
    assert in_place().refusal() is None


def test_a_supervisor_may_not_decide_a_task_that_was_not_escalated() -> None:
    case = in_place()
    case.tasks = [TANAKA_TASK, SILVA_TASK]
    refused = case.refusal()
    assert refused is not None
    assert refused.code is DecisionRefusal.INVALID_REQUEST


def test_standing_in_needs_the_supervisor_role_and_an_active_entry() -> None:
    for changes in (
        {"token_roles": [R.TECHNICAL]},
        {"supervisor": MEYER_PROFILE.model_copy(update={"active": False})},
    ):
        refused = in_place(**changes).refusal()
        assert refused is not None
        assert refused.code is DecisionRefusal.WRONG_ROLE


def test_a_supervisor_standing_in_meets_the_deciders_rules() -> None:
    """Conflict of interest (of the supervisor's own profile), separation of duties, one
    decision per stage: the same checks as for the reviewer, applied to the supervisor."""
    conflicted = MEYER_PROFILE.model_copy(update={"affiliations": ["Acme Vision AI GmbH"]})
    refused = in_place(supervisor=conflicted).refusal()
    assert refused is not None
    assert refused.code is DecisionRefusal.CONFLICT_OF_INTEREST

    security = decided(task(MEYER, S, task_id="task_security_meyer"))
    refused = in_place(security).refusal()
    assert refused is not None
    assert refused.code is DecisionRefusal.SEPARATION_OF_DUTIES

    technical = decided(task(MEYER, T, task_id="task_technical_meyer"))
    refused = in_place(technical).refusal()
    assert refused is not None
    assert refused.code is DecisionRefusal.DUPLICATE_DECISION

    case = in_place()
    case.stages[T] = replace_stage(case.stages[T], StageStatus.PAUSED)
    refused = case.refusal()
    assert refused is not None
    assert refused.code is DecisionRefusal.STAGE_NOT_OPEN
