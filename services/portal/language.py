"""The words people read: statuses, stages, SLA states and refusals in plain language.

One home for every label the pages show, so a status reads the same on every page.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

STATUS: Final = {
    "draft": "Draft",
    "submitted": "Submitted",
    "eligible": "Eligible",
    "ineligible": "Not eligible",
    "information_requested": "Information requested",
    "under_review": "Under review",
    "approved": "Approved",
    "award_opened": "Award opened",
    "rejected": "Rejected",
    "withdrawn": "Withdrawn",
}

#: A GOV.UK tag colour per status.
STATUS_COLOUR: Final = {
    "draft": "grey",
    "submitted": "blue",
    "eligible": "turquoise",
    "ineligible": "red",
    "information_requested": "yellow",
    "under_review": "purple",
    "approved": "green",
    "award_opened": "green",
    "rejected": "red",
    "withdrawn": "grey",
}

STAGE: Final = {
    "technical": "technical reviewer",
    "security": "security and data-protection reviewer",
    "finance": "finance reviewer",
    "committee": "committee",
}

#: A stage's name, as in "Finance review".
STAGE_NAME: Final = {
    "technical": "Technical",
    "security": "Security and data-protection",
    "finance": "Finance",
    "committee": "Committee",
}

SLA: Final = {
    "on_time": "On time",
    "reminder_sent": "Reminder sent",
    "overdue": "Overdue",
    "escalated": "Escalated",
}

SLA_COLOUR: Final = {
    "on_time": "green",
    "reminder_sent": "yellow",
    "overdue": "red",
    "escalated": "orange",
}

TASK_STATUS: Final = {
    "open": "Waiting for your decision",
    "decided": "Decided",
    "cancelled": "Cancelled",
    "closed": "Closed",
}

DECISION: Final = {
    "approve": "Approved",
    "reject": "Rejected",
    "request_information": "Asked for more information",
}

#: What a refusal from the desk or the workflow means, said to the reviewer.
REFUSAL: Final = {
    "wrong_role": "You do not hold the role this stage needs, so you cannot decide it.",
    "not_assigned": "This task is not assigned to you, so you cannot decide it.",
    "separation_of_duties": (
        "You have already decided another stage of this application, and one person decides "
        "at most one stage."
    ),
    "stage_not_open": "This stage is not open for decisions any more.",
    "duplicate_decision": "You have already decided this stage.",
    "application_closed": "This application has ended, so no stage of it takes decisions.",
    "invalid_request": "The decision could not be recorded as sent.",
}


def day(value: str | datetime | None) -> str:
    """``3 March 2026``: how a date reads on a page."""
    if value is None:
        return ""
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return f"{moment.day} {moment:%B %Y}"


def moment(value: str | datetime | None) -> str:
    """``3 March 2026 at 14:05 UTC``."""
    if value is None:
        return ""
    when = datetime.fromisoformat(value) if isinstance(value, str) else value
    return f"{day(when)} at {when:%H:%M} UTC"


def where_it_is(view: dict[str, Any], stages: list[str] | None = None) -> str:
    """One sentence telling a firm where its application stands."""
    status = str(view["status"])
    since = day(view.get("status_changed_at"))
    if status == "draft":
        return "This is a draft. Nobody at the programme can see it until you submit it."
    if status == "submitted":
        return f"We received your application on {since}. Eligibility is being checked."
    if status == "eligible":
        return f"Your application passed the eligibility check on {since}. Reviews follow."
    if status == "under_review":
        if stages:
            who = " and the ".join(STAGE.get(s, s) for s in stages)
            return f"Your application is with the {who} since {since}."
        return f"Your application is under review since {since}."
    if status == "information_requested":
        return f"We asked you for more information on {since}. Please amend your application."
    if status == "approved":
        return f"Your application was approved on {since}."
    if status == "award_opened":
        return f"Your award was opened on {since}."
    if status == "ineligible":
        return f"Your application did not meet the eligibility rules ({since})."
    if status == "rejected":
        return f"Your application was rejected on {since}."
    if status == "withdrawn":
        return f"Your application was withdrawn on {since}."
    return STATUS.get(status, status)


def refusal(problem_reason: str | None, detail: str, conflicts: list[str] | None = None) -> str:
    """A refusal as the reviewer reads it."""
    if problem_reason == "conflict_of_interest":
        names = ", ".join(conflicts or [])
        if names:
            return f"You declared an interest in {names}, so you cannot review this application."
        return "You declared an interest in this firm, so you cannot review this application."
    plain = REFUSAL.get(problem_reason or "")
    if plain:
        return plain
    return detail or "The decision was not recorded."


def conflicts_in(detail: str) -> list[str]:
    """The organisations a conflict-of-interest refusal names (``... interest in A, B (the``)."""
    marker = "interest in "
    if marker not in detail:
        return []
    names = detail.split(marker, 1)[1].split(" (", 1)[0]
    return [n.strip() for n in names.split(",") if n.strip()]
