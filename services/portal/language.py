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
    "offered": "Offer made",
    "offer_accepted": "Offer accepted",
    "completed": "Award completed",
    "offer_declined": "Offer declined",
    "offer_lapsed": "Offer lapsed",
    "approved_unfunded": "Approved, waiting for funds",
    "cancelled": "Cancelled",
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
    "offered": "turquoise",
    "offer_accepted": "green",
    "completed": "green",
    "offer_declined": "grey",
    "offer_lapsed": "grey",
    "approved_unfunded": "yellow",
    "cancelled": "grey",
}

#: Where a tranche stands, and its tag colour.
TRANCHE_STATE: Final = {
    "scheduled": ("Not yet due", "grey"),
    "released": ("Being paid", "blue"),
    "paid": ("Paid", "green"),
    "failed": ("Payment failed", "red"),
    "cancelled": ("Cancelled", "grey"),
}

#: Where a reported milestone stands, and its tag colour.
MILESTONE_STATE: Final = {
    "reported": ("Waiting for verification", "blue"),
    "verified": ("Verified", "green"),
    "rejected": ("Not accepted", "red"),
}

#: A unit type of zone space, as people say it.
UNIT_TYPE: Final = {
    "office_seat": "office seats",
    "lab_space": "units of lab space",
    "gpu_rack_unit": "GPU rack units",
}

#: What the tranche paid on signing is called in the schedule.
SIGNING: Final = "signing"

STAGE: Final = {
    "technical": "technical reviewer",
    "security": "security and data-protection reviewer",
    "finance": "finance reviewer",
    "committee": "committee",
    "milestone": "milestone reviewer",
}

#: A stage's name, as in "Finance review".
STAGE_NAME: Final = {
    "technical": "Technical",
    "security": "Security and data-protection",
    "finance": "Finance",
    "committee": "Committee",
    "milestone": "Milestone",
}

#: The choices of a decision form, per stage kind: what each decision is called there.
DECISION_CHOICE: Final = {
    "review": {
        "approve": "Approve",
        "reject": "Reject",
        "request_information": "Ask the firm for more information",
    },
    "milestone": {
        "approve": "Verify the milestone: the next tranche is paid",
        "reject": "Do not accept it: it goes back to the firm with your comment",
    },
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
    "conflict_of_interest": (
        "You declared an interest in this firm, so you cannot review this application."
    ),
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
    if status == "offered":
        return f"We made you an offer on {since}. Please accept or decline it."
    if status == "offer_accepted":
        return f"You accepted the offer on {since}. Your award is open."
    if status == "completed":
        return f"Every tranche of your award has been paid ({since})."
    if status == "offer_declined":
        return f"You declined the offer on {since}."
    if status == "offer_lapsed":
        return f"The offer lapsed on {since} without an answer."
    if status == "approved_unfunded":
        return f"Your application was approved on {since}, but the budget is used up for now."
    if status == "cancelled":
        return f"Your application was cancelled by the programme on {since}."
    if status == "ineligible":
        return f"Your application did not meet the eligibility rules ({since})."
    if status == "rejected":
        return f"Your application was rejected on {since}."
    if status == "withdrawn":
        return f"Your application was withdrawn on {since}."
    return STATUS.get(status, status)


def event(kind: str) -> str:
    """An event type in words: ``application.offer_accepted`` -> ``Application: offer accepted``."""
    domain, _, what = kind.partition(".")
    if not what:
        return kind.replace("_", " ").capitalize()
    return f"{domain.replace('_', ' ').capitalize()}: {what.replace('_', ' ')}"


def units(quantity: int, unit_type: str) -> str:
    """``4 GPU rack units``."""
    return f"{quantity} {UNIT_TYPE.get(unit_type, unit_type.replace('_', ' '))}"


def money(value: dict[str, Any] | None) -> str:
    """``250,000.00 EUR``."""
    if not value:
        return ""
    amount = str(value.get("amount", ""))
    whole, _, cents = amount.partition(".")
    grouped = f"{int(whole):,}" if whole.lstrip("-").isdigit() else whole
    return f"{grouped}{'.' + cents if cents else ''} {value.get('currency', '')}".strip()


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


def reassignment_refusal(
    problem_reason: str | None, detail: str, reviewer: str, conflicts: list[str] | None = None
) -> str:
    """A refused reassignment as the supervisor reads it: what stops the chosen reviewer."""
    if problem_reason == "conflict_of_interest":
        names = ", ".join(conflicts or []) or "this firm"
        return (
            f"{reviewer} declared an interest in {names}, so they cannot review this application."
        )
    said = {
        "wrong_role": f"{reviewer} does not hold the role this stage needs, or is not active.",
        "separation_of_duties": (
            f"{reviewer} has already decided another stage of this application, and one person "
            "decides at most one stage."
        ),
        "duplicate_decision": f"{reviewer} already has a task on this stage.",
        "stage_not_open": "This task was decided or cancelled meanwhile.",
        "invalid_request": "Only an escalated task can be reassigned.",
        "application_closed": "This application has ended, so none of its tasks moves any more.",
    }.get(problem_reason or "")
    return said or detail or "The task was not reassigned."


def conflicts_in(detail: str) -> list[str]:
    """The organisations a conflict-of-interest refusal names (``... interest in A, B (the``)."""
    marker = "interest in "
    if marker not in detail:
        return []
    names = detail.split(marker, 1)[1].split(" (", 1)[0]
    return [n.strip() for n in names.split(",") if n.strip()]
