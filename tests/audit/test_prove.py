"""Decision proofs on hand-made logs: each check of `incentives audit prove` holds or fails."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from contracts import catalog
from contracts.envelope import Actor, ActorKind, Envelope
from contracts.v1.applications import ApplicationContent
from contracts.v1.common import EligibilityOutcome
from contracts.v1.desk import ReviewerProfile, ReviewerRole
from services.audit.domain.state import LoggedEvent
from services.cli.prove import (
    Registry,
    RegistryVersion,
    RuleFile,
    Verdict,
    prove_eligibility,
    prove_reviews,
)
from services.eligibility.domain import parse_rule_set
from services.eligibility.rulefiles import SHIPPED_RULES_DIR
from tests.applications.helpers import content, event

APP = "app_prove"
T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
NOVAK = "rev.novak@gaip.example"
TANAKA = "rev.tanaka@gaip.example"  # declares an affiliation with the example firm


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def files() -> list[RuleFile]:
    return [RuleFile(p.name, p.read_bytes()) for p in sorted(SHIPPED_RULES_DIR.glob("*.toml"))]


def logged(envelopes: list[Envelope[Any]]) -> list[LoggedEvent]:
    return [LoggedEvent(i, "x.events", e) for i, e in enumerate(envelopes)]


def submitted() -> Envelope[Any]:
    return event(
        "application.submitted", APP, occurred_at=at(0), revision=1, content=content(),
        submitted_at=at(0),
    )  # fmt: skip


def assessed(**changes: Any) -> Envelope[Any]:
    """The shipped rule set in force at the submission, run on the submitted content."""
    rule_set = next(
        r
        for r in (parse_rule_set(f.data, f.name) for f in files())
        if r.effective_from <= at(0).date()
    )
    decision = rule_set.evaluate(ApplicationContent.model_validate(content()), at(0))
    payload = decision.to_event(application_id=APP, application_revision=1, assessed_at=at(1))
    payload = payload.model_copy(update=changes)
    return catalog.make_envelope(
        "eligibility.assessed",
        payload,
        subject=APP,
        actor=Actor.system("eligibility"),
        producer="eligibility",
        correlation_id=submitted().correlation_id,
        occurred_at=at(1),
    )


def test_an_assessment_re_run_under_its_rule_set_is_proven() -> None:
    [proof] = prove_eligibility(logged([submitted(), assessed()]), files())
    assert proof.verdict is Verdict.PROVEN, proof.problems


def test_an_edited_rule_file_fails_the_proof() -> None:
    edited = [RuleFile(f.name, f.data + b"\n# edited\n") for f in files()]
    [proof] = prove_eligibility(logged([submitted(), assessed()]), edited)
    assert proof.verdict is Verdict.FAILED
    assert "edited after the decision" in proof.problems[0]


def test_a_recorded_outcome_the_rules_do_not_give_fails_rule_by_rule() -> None:
    original = assessed().payload
    flipped = [
        r.model_copy(update={"passed": not r.passed}) if i == 0 else r
        for i, r in enumerate(original.rule_results)
    ]
    [proof] = prove_eligibility(
        logged(
            [submitted(), assessed(outcome=EligibilityOutcome.INELIGIBLE, rule_results=flipped)]
        ),
        files(),
    )
    assert proof.verdict is Verdict.FAILED
    assert proof.problems[0].startswith("outcome: recorded ineligible")
    assert proof.problems[1].startswith(f"rule {flipped[0].rule_id}:")


def test_an_assessment_of_a_revision_not_in_the_log_fails() -> None:
    [proof] = prove_eligibility(logged([assessed()]), files())
    assert proof.problems == ["revision 1 is not in the log"]


def assigned(task: str, who: str, stage: str, minute: int) -> Envelope[Any]:
    return event(
        "review.task_assigned", APP, occurred_at=at(minute), task_id=task, reviewer_id=who,
        stage=stage,
    )  # fmt: skip


def decided(task: str, who: str, stage: str, minute: int, **changes: Any) -> Envelope[Any]:
    actor = changes.pop("actor", Actor(kind=ActorKind.REVIEWER, id=who))
    return event(
        "review.decision_recorded", APP, occurred_at=at(minute), actor=actor, task_id=task,
        reviewer_id=who, stage=stage, **changes,
    )  # fmt: skip


def entry(
    who: str, *roles: ReviewerRole, affiliations: tuple[str, ...] = ()
) -> list[RegistryVersion]:
    profile = ReviewerProfile(
        reviewer_id=who, name=who, roles=list(roles), affiliations=list(affiliations)
    )
    return [RegistryVersion(changed_at=T0 - timedelta(days=1), profile=profile, change="added")]


REGISTRY: Registry = {
    NOVAK: entry(NOVAK, ReviewerRole.TECHNICAL, ReviewerRole.FINANCE),
    TANAKA: entry(TANAKA, ReviewerRole.SECURITY, affiliations=("Acme Vision AI GmbH",)),
}


def test_an_assigned_decision_by_a_qualified_unconflicted_reviewer_is_proven() -> None:
    events = logged(
        [submitted(), assigned("t1", NOVAK, "technical", 2), decided("t1", NOVAK, "technical", 3)]
    )
    [proof] = prove_reviews(events, REGISTRY)
    assert proof.verdict is Verdict.PROVEN, proof.problems
    assert len(proof.checked) == 6


@pytest.mark.parametrize(
    ("envelopes", "problem"),
    [
        ([decided("t1", NOVAK, "technical", 3)], "task t1 was not assigned before the decision"),
        (
            [assigned("t1", NOVAK, "security", 2), decided("t1", NOVAK, "technical", 3)],
            f"task t1 was assigned to {NOVAK} for security, not to {NOVAK} for technical",
        ),
        (
            [
                assigned("t1", NOVAK, "technical", 2),
                decided("t1", NOVAK, "technical", 3, actor=Actor.system("workflow")),
            ],
            f"recorded as the act of system system:workflow, not {NOVAK}",
        ),
        (
            [
                assigned("t1", NOVAK, "technical", 2),
                event("review.task_cancelled", APP, occurred_at=at(3), task_id="t1"),
                decided("t1", NOVAK, "technical", 4),
            ],
            "task t1 was cancelled before the decision",
        ),
        (
            [
                assigned("t1", NOVAK, "technical", 2),
                decided("t1", NOVAK, "technical", 3),
                assigned("t2", NOVAK, "finance", 4),
                decided("t2", NOVAK, "finance", 5),
            ],
            f"separation of duties: {NOVAK} also decided finance",
        ),
        (
            [assigned("t1", NOVAK, "security", 2), decided("t1", NOVAK, "security", 3)],
            f"{NOVAK} did not hold the security role",
        ),
        (
            [assigned("t1", TANAKA, "security", 2), decided("t1", TANAKA, "security", 3)],
            f"conflict of interest: {TANAKA} declared Acme Vision AI GmbH",
        ),
    ],
)
def test_a_review_decision_that_breaks_a_rule_fails(
    envelopes: list[Envelope[Any]], problem: str
) -> None:
    proofs = prove_reviews(logged([submitted(), *envelopes]), REGISTRY)
    assert proofs[0].verdict is Verdict.FAILED
    assert problem in proofs[0].problems


def test_the_registry_is_taken_as_it_stood_at_the_decision() -> None:
    events = logged(
        [submitted(), assigned("t1", NOVAK, "technical", 2), decided("t1", NOVAK, "technical", 3)]
    )
    [stood] = entry(NOVAK, ReviewerRole.TECHNICAL)
    assert stood.profile is not None
    # Changed after the decision: the role taken away and a conflict declared. The decision
    # stands on the entry of its own time.
    later = RegistryVersion(
        changed_at=at(10),
        profile=stood.profile.model_copy(
            update={"roles": [ReviewerRole.FINANCE], "affiliations": ["Acme Vision AI GmbH"]}
        ),
    )
    [proof] = prove_reviews(events, {NOVAK: [stood, later]})
    assert proof.verdict is Verdict.PROVEN, proof.problems
    # Changed before it: the change is what counts.
    earlier = RegistryVersion(changed_at=at(1), profile=later.profile)
    [proof] = prove_reviews(events, {NOVAK: [stood, earlier]})
    assert proof.verdict is Verdict.FAILED
    assert f"{NOVAK} did not hold the technical role" in proof.problems
    assert f"conflict of interest: {NOVAK} declared Acme Vision AI GmbH" in proof.problems


def test_a_reviewer_added_after_or_removed_before_the_decision_fails() -> None:
    events = logged(
        [submitted(), assigned("t1", NOVAK, "technical", 2), decided("t1", NOVAK, "technical", 3)]
    )
    [stood] = entry(NOVAK, ReviewerRole.TECHNICAL)
    added_late = RegistryVersion(changed_at=at(10), profile=stood.profile, change="added")
    [proof] = prove_reviews(events, {NOVAK: [added_late]})
    assert proof.verdict is Verdict.FAILED
    assert proof.problems[0].startswith(f"{NOVAK} was not in the reviewer registry at the")
    removed = RegistryVersion(changed_at=at(1), profile=None, change="removed")
    [proof] = prove_reviews(events, {NOVAK: [stood, removed]})
    assert proof.verdict is Verdict.FAILED
    assert "removed from the reviewer registry" in proof.problems[0]


def test_a_decision_older_than_the_registry_history_or_an_unreachable_desk_is_unproven() -> None:
    events = logged(
        [submitted(), assigned("t1", NOVAK, "technical", 2), decided("t1", NOVAK, "technical", 3)]
    )
    [stood] = entry(NOVAK, ReviewerRole.TECHNICAL)
    recorded = RegistryVersion(changed_at=at(10), profile=stood.profile, change="recorded")
    [proof] = prove_reviews(events, {NOVAK: [recorded]})
    assert proof.verdict is Verdict.UNPROVEN
    [unreachable] = prove_reviews(events, {NOVAK: "the review desk is unreachable"})
    assert unreachable.verdict is Verdict.UNPROVEN
    [absent] = prove_reviews(events, {NOVAK: None})
    assert absent.problems == [f"{NOVAK} is not in the reviewer registry"]
