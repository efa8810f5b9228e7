"""Decision proofs: every decision on an application re-checked from the log's records of it.

- **Eligibility.** Each ``eligibility.assessed`` is re-run under the rule set it recorded: a
  rule-set file whose SHA-256 is the recorded one must be there (a file of the same id and
  version with another hash was edited after the decision), then the rules are evaluated again
  on the content of the assessed revision (from its ``application.submitted`` or
  ``application.amended`` record) at the first submission time, and the outcome, every rule's
  result and explanation, and the missing fields must be those recorded.
- **Review.** Each ``review.decision_recorded`` is checked against the log and the reviewer
  registry: the actor is the reviewer; the task was assigned to that reviewer for that stage
  (``review.task_assigned`` earlier in the log) and not cancelled before the decision; the
  reviewer held the stage's role (:data:`workflows.policy.STAGE_ROLES`) and declared no
  interest in the firm or its parent companies (:func:`contracts.conflicts.conflicts`, on the
  content of the revision then current); and decided no other stage of the application
  (separation of duties: one reviewer, one stage). Role and interests are those of the
  registry entry as it stood at the decision's instant, rebuilt from the registry's history
  (every version of the entry, removals included): a reviewer added only after the decision,
  or removed before it, fails; a decision older than the registry's history (an entry
  ``recorded`` when the history began, after the decision) is *unproven* rather than passed.

Pure apart from the caller's inputs: the events (decoded leaves), the rule-set files' bytes
and the registry's history.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from contracts.conflicts import conflicts, firm_organisations
from contracts.v1.applications import ApplicationAmended, ApplicationContent, ApplicationSubmitted
from contracts.v1.desk import ReviewerProfile
from contracts.v1.eligibility import EligibilityAssessed
from contracts.v1.review import ReviewDecisionRecorded, ReviewTaskAssigned, ReviewTaskCancelled
from services.audit.domain.state import LoggedEvent
from services.eligibility.domain import RuleSet, RuleSetError, content_sha256, parse_rule_set
from workflows.policy import STAGE_ROLES


class Verdict(StrEnum):
    """How a decision stands after its proof."""

    PROVEN = "proven"
    FAILED = "failed"
    #: Nothing contradicts it, but something it rests on cannot be checked.
    UNPROVEN = "unproven"


@dataclass
class Proof:
    """The proof of one decision: what was checked and what did not hold."""

    index: int
    kind: str
    subject: str
    at: datetime
    checked: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    unproven: list[str] = field(default_factory=list)

    @property
    def verdict(self) -> Verdict:
        if self.problems:
            return Verdict.FAILED
        return Verdict.UNPROVEN if self.unproven else Verdict.PROVEN


@dataclass(frozen=True)
class RuleFile:
    """A rule-set file's name and bytes."""

    name: str
    data: bytes


@dataclass(frozen=True)
class RegistryVersion:
    """One version of a reviewer's registry entry: the entry as it stood from ``changed_at`` on.

    ``profile`` is ``None`` once the entry was removed. ``change`` is ``added``, ``replaced``,
    ``removed``, or ``recorded`` for the entry as it stood when the history began (what it was
    before is not known).
    """

    changed_at: datetime
    profile: ReviewerProfile | None
    change: str = "replaced"


#: Per reviewer: the registry's versions of their entry (oldest first), ``None`` when the
#: registry never had them, or a string saying why the history could not be read.
Registry = Mapping[str, Sequence[RegistryVersion] | str | None]


def standing_at(versions: Sequence[RegistryVersion], at: datetime) -> RegistryVersion | None:
    """The version in force at ``at`` (the last one changed at or before it), if any."""
    stood = None
    for version in sorted(versions, key=lambda v: v.changed_at):
        if version.changed_at > at:
            break
        stood = version
    return stood


def _contents(events: Sequence[LoggedEvent]) -> dict[int, tuple[int, ApplicationContent, Any]]:
    """Per revision: the leaf index, the content and the submission time it carries."""
    out: dict[int, tuple[int, ApplicationContent, Any]] = {}
    for event in events:
        payload = event.envelope.payload
        if isinstance(payload, ApplicationSubmitted | ApplicationAmended):
            out.setdefault(payload.revision, (event.index, payload.content, payload.submitted_at))
    return out


def _rule_set_for(
    assessed: EligibilityAssessed, files: Sequence[RuleFile], proof: Proof
) -> RuleSet | None:
    label = f"{assessed.rule_set_id} {assessed.rule_set_version}"
    by_hash = [f for f in files if content_sha256(f.data) == assessed.rule_set_sha256]
    if by_hash:
        file = by_hash[0]
        try:
            rule_set = parse_rule_set(file.data, source=file.name)
        except RuleSetError as exc:  # pragma: no cover - a recorded hash of an invalid file
            proof.problems.append(f"{file.name} has the recorded SHA-256 but is invalid: {exc}")
            return None
        if (rule_set.id, rule_set.version) != (assessed.rule_set_id, assessed.rule_set_version):
            proof.problems.append(
                f"{file.name} has the recorded SHA-256 but is {rule_set.id} {rule_set.version}, "
                f"not {label}"
            )
            return None
        proof.checked.append(f"rule set {label}: {file.name} has the recorded SHA-256")
        return rule_set
    for file in files:
        try:
            rule_set = parse_rule_set(file.data, source=file.name)
        except RuleSetError:
            continue
        if (rule_set.id, rule_set.version) == (assessed.rule_set_id, assessed.rule_set_version):
            proof.problems.append(
                f"rule set {label}: {file.name} has SHA-256 {rule_set.sha256}, the decision "
                f"recorded {assessed.rule_set_sha256}: the file was edited after the decision"
            )
            return None
    proof.problems.append(
        f"rule set {label} (SHA-256 {assessed.rule_set_sha256}) is in none of the rule files"
    )
    return None


def prove_eligibility(events: Sequence[LoggedEvent], files: Sequence[RuleFile]) -> list[Proof]:
    """One proof per ``eligibility.assessed`` in ``events`` (log order)."""
    contents = _contents(events)
    first = contents.get(1)
    proofs: list[Proof] = []
    for event in events:
        assessed = event.envelope.payload
        if not isinstance(assessed, EligibilityAssessed):
            continue
        revision = assessed.application_revision
        proof = Proof(
            event.index,
            "eligibility",
            f"revision {revision}: {assessed.outcome.value} under "
            f"{assessed.rule_set_id} {assessed.rule_set_version}",
            event.envelope.occurred_at,
        )
        proofs.append(proof)
        rule_set = _rule_set_for(assessed, files, proof)
        assessed_content = contents.get(revision)
        if assessed_content is None:
            proof.problems.append(f"revision {revision} is not in the log")
        if rule_set is None or assessed_content is None:
            continue
        index, content, submitted_at = assessed_content
        # The rule set and the rules' clock are those of the first submission.
        submitted_at = first[2] if first is not None else submitted_at
        decision = rule_set.evaluate(content, submitted_at)
        rerun = decision.to_event(
            application_id=assessed.application_id,
            application_revision=revision,
            assessed_at=assessed.assessed_at,
        )
        proof.checked.append(f"re-ran on the content of leaf {index}, submitted {submitted_at}")
        if rerun.outcome is not assessed.outcome:
            proof.problems.append(
                f"outcome: recorded {assessed.outcome.value}, re-run {rerun.outcome.value}"
            )
        recorded = {r.rule_id: r for r in assessed.rule_results}
        again = {r.rule_id: r for r in rerun.rule_results}
        for rule_id in dict.fromkeys([*recorded, *again]):
            was, now = recorded.get(rule_id), again.get(rule_id)
            if was is None or now is None:
                where = "the re-run" if was is None else "the recorded decision"
                proof.problems.append(f"rule {rule_id}: only in {where}")
            elif was.passed != now.passed:
                proof.problems.append(
                    f"rule {rule_id}: recorded {'passed' if was.passed else 'not passed'}, "
                    f"re-run {'passed' if now.passed else 'not passed'}"
                )
            elif was.explanation != now.explanation:
                proof.problems.append(f"rule {rule_id}: the explanation differs")
        if [r.rule_id for r in assessed.rule_results] != [r.rule_id for r in rerun.rule_results]:
            proof.problems.append("the rules were evaluated in another order")
        if list(assessed.missing_fields) != list(rerun.missing_fields):
            proof.problems.append(
                f"missing fields: recorded {assessed.missing_fields}, re-run {rerun.missing_fields}"
            )
        if not proof.problems:
            proof.checked.append(f"outcome and all {len(again)} rules match, rule by rule")
    return proofs


def prove_reviews(events: Sequence[LoggedEvent], registry: Registry) -> list[Proof]:
    """One proof per ``review.decision_recorded`` in ``events`` (log order), each checked
    against the registry as it stood at the decision (see :data:`Registry`)."""
    contents = _contents(events)
    proofs: list[Proof] = []
    for position, event in enumerate(events):
        decided = event.envelope.payload
        if not isinstance(decided, ReviewDecisionRecorded):
            continue
        who, stage = decided.reviewer_id, decided.stage
        proof = Proof(
            event.index,
            "review",
            f"{stage.value}: {decided.decision.value} by {who}",
            event.envelope.occurred_at,
        )
        proofs.append(proof)
        earlier = events[:position]
        actor = event.envelope.actor
        if actor.kind.value == "reviewer" and actor.id == who:
            proof.checked.append("recorded as the reviewer's own act")
        else:
            proof.problems.append(
                f"recorded as the act of {actor.kind.value} {actor.id}, not {who}"
            )
        assigned = [
            e
            for e in earlier
            if isinstance(e.envelope.payload, ReviewTaskAssigned)
            and e.envelope.payload.task_id == decided.task_id
        ]
        task = assigned[0].envelope.payload if assigned else None
        if not isinstance(task, ReviewTaskAssigned):
            proof.problems.append(f"task {decided.task_id} was not assigned before the decision")
        elif (task.reviewer_id, task.stage) != (who, stage):
            proof.problems.append(
                f"task {decided.task_id} was assigned to {task.reviewer_id} for "
                f"{task.stage.value}, not to {who} for {stage.value}"
            )
        else:
            proof.checked.append(
                f"task {decided.task_id} assigned to {who} at leaf {assigned[0].index}"
            )
        if any(
            isinstance(e.envelope.payload, ReviewTaskCancelled)
            and e.envelope.payload.task_id == decided.task_id
            for e in earlier
        ):
            proof.problems.append(f"task {decided.task_id} was cancelled before the decision")
        others = sorted(
            {
                e.envelope.payload.stage.value
                for e in events
                if isinstance(e.envelope.payload, ReviewDecisionRecorded)
                and e.envelope.payload.reviewer_id == who
                and e.envelope.payload.stage is not stage
            }
        )
        if others:
            proof.problems.append(f"separation of duties: {who} also decided {', '.join(others)}")
        else:
            proof.checked.append(f"{who} decided no other stage")
        _against_registry(proof, decided, registry.get(who, "not looked up"), contents, earlier)
    return proofs


def _against_registry(
    proof: Proof,
    decided: ReviewDecisionRecorded,
    history: Sequence[RegistryVersion] | str | None,
    contents: Mapping[int, tuple[int, ApplicationContent, Any]],
    earlier: Sequence[LoggedEvent],
) -> None:
    who, role = decided.reviewer_id, STAGE_ROLES[decided.stage]
    if isinstance(history, str):
        proof.unproven.append(f"role and conflict of interest: the registry: {history}")
        return
    if not history:
        proof.problems.append(f"{who} is not in the reviewer registry")
        return
    stood = standing_at(history, proof.at)
    if stood is None:
        first = min(history, key=lambda v: v.changed_at)
        if first.change == "recorded":
            proof.unproven.append(
                f"role and conflict of interest: the registry's history of {who} begins at "
                f"{first.changed_at.isoformat()}, after the decision"
            )
        else:
            proof.problems.append(
                f"{who} was not in the reviewer registry at the decision (added "
                f"{first.changed_at.isoformat()})"
            )
        return
    if stood.profile is None:
        proof.problems.append(
            f"{who} had been removed from the reviewer registry at "
            f"{stood.changed_at.isoformat()}, before the decision"
        )
        return
    proof.checked.append(
        f"{who}'s registry entry as it stood then ({stood.change} {stood.changed_at.isoformat()})"
    )
    if role in stood.profile.roles:
        proof.checked.append(f"{who} held the {role.value} role")
    else:
        proof.problems.append(f"{who} did not hold the {role.value} role")
    revisions = [
        e.envelope.payload.revision
        for e in earlier
        if isinstance(e.envelope.payload, ApplicationSubmitted | ApplicationAmended)
    ]
    current = contents.get(max(revisions)) if revisions else None
    if current is None:
        proof.unproven.append("conflict of interest: the application's content is not in the log")
        return
    hits = conflicts(stood.profile, firm_organisations(current[1]))
    if hits:
        proof.problems.append(f"conflict of interest: {who} declared {', '.join(hits)}")
    else:
        proof.checked.append(f"{who} declared no interest in the firm or its parents")
