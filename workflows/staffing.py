"""Who reviews what: the staffing plan of ``IncentiveApproval`` as pure functions.

The workflow asks the desk for candidates (an activity) and leaves every choice to this module:
which seats of a group must be (re)filled, who may take one (role, activity, conflict of
interest, separation of duties), the deterministic choice among them, and the supervisor an
overdue task goes to. Nothing here talks to Temporal or the network, so the rules are unit
tested directly and replay cannot diverge on them.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from contracts.conflicts import Organisation, conflicts
from contracts.v1.common import Decision, ReviewStage
from contracts.v1.desk import ReviewerProfile, ReviewerRole
from workflows.policy import STAGE_ROLES
from workflows.state import StageState, StageStatus, Task

_FINAL = (Decision.APPROVE, Decision.REJECT)


def may_review(
    profile: ReviewerProfile,
    stage: ReviewStage,
    organisations: Sequence[Organisation],
    committed: Mapping[str, ReviewStage],
) -> bool:
    """Whether ``profile`` may be assigned ``stage``.

    ``committed`` maps reviewer ids to the stage of this application they already hold or
    decided; one person decides at most one stage (separation of duties).
    """
    other = committed.get(profile.reviewer_id)
    return (
        profile.active
        and STAGE_ROLES[stage] in profile.roles
        and not conflicts(profile, organisations)
        and (other is None or other is stage)
    )


def choose_reviewers(
    seats: Sequence[tuple[ReviewStage, int]],
    pools: Mapping[ReviewStage, Sequence[str]],
    taken: Iterable[str] = (),
) -> dict[ReviewStage, list[str]] | None:
    """Fill ``seats`` (stage, how many) from ``pools`` with distinct people, or None if impossible.

    Deterministic: pools are taken in reviewer-id order and the lexicographically first complete
    assignment wins. Backtracking matters for parallel stages: with technical = {novak, tanaka}
    and security = {novak}, a greedy pick would give novak to technical and leave security empty.
    """
    chosen: dict[ReviewStage, list[str]] = {}

    def fill(index: int, used: frozenset[str]) -> bool:
        if index == len(seats):
            return True
        stage, count = seats[index]
        pool = [r for r in sorted(set(pools.get(stage, ()))) if r not in used]
        for combination in itertools.combinations(pool, count):
            if fill(index + 1, used | set(combination)):
                chosen[stage] = list(combination)
                return True
        return False

    return chosen if fill(0, frozenset(taken)) else None


def committed_reviewers(stages: Mapping[ReviewStage, StageState]) -> dict[str, ReviewStage]:
    """Reviewer -> the stage of this application they hold or decided."""
    return {r: s for s, state in stages.items() for r in state.reviewers}


def has_final_decision(tasks: Iterable[Task], stage: ReviewStage, reviewer_id: str) -> bool:
    """Whether ``reviewer_id`` approved or rejected ``stage`` (in any round)."""
    return any(
        t.stage is stage and t.reviewer_id == reviewer_id and t.decision in _FINAL for t in tasks
    )


@dataclass(frozen=True)
class Seats:
    """What staffing a group needs: who keeps a seat, and how many seats are free per stage."""

    keep: Mapping[ReviewStage, list[str]]
    open: list[tuple[ReviewStage, int]]

    @property
    def roles(self) -> list[ReviewerRole]:
        """The registry role to ask candidates for, per free seat (in ``open`` order)."""
        return [STAGE_ROLES[stage] for stage, _ in self.open]


def seats_to_fill(
    group: Sequence[ReviewStage],
    stages: Mapping[ReviewStage, StageState],
    tasks: Iterable[Task],
    profiles: Mapping[str, ReviewerProfile],
    organisations: Sequence[Organisation],
) -> Seats:
    """The seats of the staffing stages of ``group``.

    Reviewers who already gave a final decision keep it (their seat is not free); the others
    keep their seat unless the (amended) application now conflicts with their declared
    interests, in which case the seat is free again.
    """
    tasks = list(tasks)
    keep: dict[ReviewStage, list[str]] = {}
    free: list[tuple[ReviewStage, int]] = []
    for stage in group:
        state = stages[stage]
        if state.status is not StageStatus.STAFFING:
            continue
        final = {t.reviewer_id for t in tasks if t.stage is stage and t.decision in _FINAL}
        keep[stage] = [
            r
            for r in state.reviewers
            if r not in final and not conflicts(profiles[r], organisations)
        ]
        needed = state.members - len(final) - len(keep[stage])
        if needed > 0:
            free.append((stage, needed))
    return Seats(keep=keep, open=free)


@dataclass(frozen=True)
class Staffing:
    """A complete plan: who gets a task now, and each stage's reviewers afterwards."""

    assign: dict[ReviewStage, list[str]]
    reviewers: dict[ReviewStage, list[str]]


def plan(
    seats: Seats,
    candidates: Mapping[ReviewStage, Sequence[ReviewerProfile]],
    stages: Mapping[ReviewStage, StageState],
    tasks: Iterable[Task],
    organisations: Sequence[Organisation],
) -> Staffing | None:
    """Fill the free ``seats`` from the desk's ``candidates``; None while that is impossible.

    Conflicted members leave the stage and their seats go to the new reviewers; members who
    gave a final decision stay listed.
    """
    tasks = list(tasks)
    chosen: dict[ReviewStage, list[str]] = {}
    if seats.open:
        committed = committed_reviewers(stages)
        pools = {
            stage: [
                p.reviewer_id
                for p in candidates.get(stage, ())
                if may_review(p, stage, organisations, committed)
                and p.reviewer_id not in stages[stage].reviewers
            ]
            for stage, _ in seats.open
        }
        taken = [r for reviewers in seats.keep.values() for r in reviewers]
        choice = choose_reviewers(seats.open, pools, taken)
        if choice is None:
            return None
        chosen = choice
    assign: dict[ReviewStage, list[str]] = {}
    reviewers: dict[ReviewStage, list[str]] = {}
    for stage, kept in seats.keep.items():
        current = stages[stage].reviewers
        decided = [r for r in current if r not in kept and has_final_decision(tasks, stage, r)]
        reviewers[stage] = [*decided, *kept, *chosen.get(stage, [])]
        assign[stage] = [*kept, *chosen.get(stage, [])]
    return Staffing(assign=assign, reviewers=reviewers)


def supervisor_for(
    task: Task, supervisors: Iterable[ReviewerProfile], organisations: Sequence[Organisation]
) -> ReviewerProfile | None:
    """The first eligible supervisor by id for an overdue task, or None for the shared queue."""
    for profile in sorted(supervisors, key=lambda p: p.reviewer_id):
        if (
            profile.active
            and ReviewerRole.SUPERVISOR in profile.roles
            and profile.reviewer_id != task.reviewer_id
            and not conflicts(profile, organisations)
        ):
            return profile
    return None


def milestone_verifier(
    candidates: Iterable[ReviewerProfile],
    stages: Mapping[ReviewStage, StageState],
    organisations: Sequence[Organisation],
    reported_by: str,
) -> str | None:
    """Who verifies a reported milestone: the first eligible candidate by id, or None.

    The review rules apply as for any stage (role, activity, conflict of interest, and one
    person decides at most one review stage of the application); whoever reported it never
    verifies it.
    """
    committed = committed_reviewers(stages)
    for profile in sorted(candidates, key=lambda p: p.reviewer_id):
        if profile.reviewer_id != reported_by and may_review(
            profile, ReviewStage.MILESTONE, organisations, committed
        ):
            return profile.reviewer_id
    return None
