"""The review rules of ``IncentiveApproval`` as pure functions: no Temporal, no I/O.

Kept apart from the workflow so the rules can be unit-tested directly and read in one place:
who may review a stage (role, conflict of interest, separation of duties), how reviewers are
chosen (deterministically), how a committee counts, and the ids the workflow derives.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from contracts.conflicts import Organisation, conflicts
from contracts.v1.applications import ApplicationContent
from contracts.v1.common import ReviewStage
from contracts.v1.desk import ReviewerProfile, ReviewerRole
from contracts.v1.review import ApplicationSummary

#: The registry role a reviewer needs to decide each stage.
STAGE_ROLES: Mapping[ReviewStage, ReviewerRole] = {
    ReviewStage.TECHNICAL: ReviewerRole.TECHNICAL,
    ReviewStage.SECURITY: ReviewerRole.SECURITY,
    ReviewStage.FINANCE: ReviewerRole.FINANCE,
    ReviewStage.COMMITTEE: ReviewerRole.COMMITTEE,
}


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


@dataclass(frozen=True)
class Tally:
    """The approvals and rejections a stage needs and has (a single reviewer is 1 of 1)."""

    required: int
    members: int
    approvals: int
    rejections: int

    @property
    def approved(self) -> bool:
        """Enough approvals carried the stage."""
        return self.approvals >= self.required

    @property
    def rejected(self) -> bool:
        """So many rejected that the remaining members can no longer reach the quorum."""
        return self.rejections > self.members - self.required


def short_hash(*parts: str, length: int = 16) -> str:
    """A stable hexadecimal digest of ``parts`` (ids must fit the 100-character Identifier)."""
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:length]


def task_id(application_id: str, stage: ReviewStage, reviewer_id: str, round_: int) -> str:
    """The review task of one reviewer on one stage in one round (rounds follow amendments)."""
    return f"task_{stage.value}_{short_hash(application_id, stage.value, reviewer_id, str(round_))}"


def information_request_id(application_id: str, loop: int) -> str:
    """The id of the ``loop``-th information request; the amendment names it."""
    return f"req_{short_hash(application_id, 'information', str(loop))}"


def eligibility_task_id(application_id: str, revision: int) -> str:
    """The pseudo task of an information request raised by the eligibility rules."""
    return f"task_eligibility_{short_hash(application_id, 'eligibility', str(revision))}"


def summary_of(firm_id: str, content: ApplicationContent) -> ApplicationSummary:
    """What a reviewer's inbox shows about the application."""
    grant = content.incentives.grant
    return ApplicationSummary(
        firm_id=firm_id,
        firm_legal_name=content.firm.legal_name,
        firm_country=content.firm.country_of_incorporation,
        title=content.proposal.title,
        sector=content.proposal.sector,
        grant_requested=grant.amount if grant is not None else None,
        investment_commitment=content.proposal.investment_commitment,
    )
