"""How applications are shown: list entries and full views, as the caller may see them.

Firms see their own applications with the actions they may take; staff see the same without
actions, plus the workflow's internal timeline entries. Responses are serialised once, straight
from these models, rather than validated again by FastAPI on the way out.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi.responses import Response
from pydantic import BaseModel

from contracts.envelope import ActorKind
from contracts.status import Status
from services.applications.domain import (
    InformationRequest,
    allowed_actions,
    submission_issues,
    visible_actor_id,
)
from services.applications.models import ApplicationRecord, TimelineEntry
from services.applications.schemas import (
    ActorView,
    ApplicationSummary,
    ApplicationView,
    EligibilityView,
    TimelineEntryView,
)
from services.kit.auth import Principal, Role


def json_response(
    model: BaseModel, status_code: int = 200, headers: dict[str, str] | None = None
) -> Response:
    """``model`` as a JSON response, serialised once."""
    return Response(
        model.model_dump_json(),
        status_code=status_code,
        media_type="application/json",
        headers=headers,
    )


def _summary_fields(record: ApplicationRecord) -> dict[str, Any]:
    content = record.content
    firm = content.get("firm") or {}
    proposal = content.get("proposal") or {}
    eligibility = record.eligibility or {}
    return {
        "id": record.id,
        "firm_id": record.firm_id,
        "status": record.status,
        "revision": record.revision,
        "title": proposal.get("title"),
        "legal_name": firm.get("legal_name"),
        "rule_set_version": eligibility.get("rule_set_version"),
        "created_at": record.created_at,
        "updated_at": record.updated_at,
        "submitted_at": record.submitted_at,
    }


def to_summary(record: ApplicationRecord) -> ApplicationSummary:
    """The list entry of an application."""
    return ApplicationSummary.model_validate(_summary_fields(record))


def _entry_view(entry: TimelineEntry, *, for_firm: bool) -> TimelineEntryView:
    return TimelineEntryView(
        at=entry.occurred_at,
        event=entry.event_type,
        status=Status(entry.status) if entry.status else None,
        actor=ActorView(
            kind=ActorKind(entry.actor_kind),
            id=visible_actor_id(entry.actor_kind, entry.actor_id, for_firm=for_firm),
        ),
        summary=entry.summary,
        reasons=list(entry.reasons),
    )


def to_view(
    record: ApplicationRecord, entries: Sequence[TimelineEntry], principal: Principal
) -> ApplicationView:
    """The full view of an application, as ``principal`` may see it."""
    for_firm = principal.role is Role.FIRM
    status = Status(record.status)
    information = (
        InformationRequest.model_validate(record.information_request)
        if record.information_request and status is Status.INFORMATION_REQUESTED
        else None
    )
    missing = (
        [issue.dotted or "content" for issue in submission_issues(record.content)]
        if status is Status.DRAFT
        else []
    )
    view = ApplicationView.model_validate(
        {
            **_summary_fields(record),
            "journey_id": record.correlation_id,
            "status_reasons": list(record.status_reasons),
            "status_changed_at": record.status_changed_at,
            "allowed_actions": list(allowed_actions(status)) if for_firm else [],
            "missing_for_submission": missing,
            "content": record.content,
            "eligibility": (
                EligibilityView.model_validate(record.eligibility) if record.eligibility else None
            ),
            "information_request": information,
            "award": record.award,
            "timeline": [
                _entry_view(e, for_firm=for_firm)
                for e in entries
                if not (for_firm and e.staff_only)
            ],
        }
    )
    if view.award is not None:
        view.award.milestone_due = view.award.next_milestone()
    return view
