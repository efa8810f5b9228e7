"""The firm's routes after the committee: answer the offer, report milestones.

``POST /v1/applications/{id}/offer/accept``, ``.../offer/decline`` and ``.../milestones``. Each
takes an ``Idempotency-Key``; a retry with the same key and body acts once. The checks are
:mod:`services.applications.offers`; this module writes the event, its timeline entry, the
updated offer view and the key in one unit of work.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Body, Request, Security
from fastapi.responses import Response
from pydantic import BaseModel
from sqlalchemy.exc import IntegrityError

from contracts.envelope import utcnow
from services.applications import awards, offers, store
from services.applications.api import (
    ApplicationId,
    FirmUser,
    IdempotencyKeyHeader,
    _commit_with_key,
    _replay,
    _replay_after_conflict,
    _responses,
    _service,
    _stage_event,
    bearer,
    fingerprint,
)
from services.applications.domain import Status
from services.applications.models import ApplicationRecord
from services.applications.schemas import ApplicationView
from services.applications.views import json_response, to_view
from services.kit.auth import Principal

router = APIRouter(
    prefix="/v1/applications", tags=["applications"], dependencies=[Security(bearer)]
)

#: A use case: checks the record and returns the event to record, its new status and words.
UseCase = Callable[[ApplicationRecord, datetime], tuple[str, BaseModel, Status, str]]


async def _act(
    request: Request,
    application_id: str,
    principal: Principal,
    key: str,
    operation: str,
    body: bytes,
    use_case: UseCase,
) -> Response:
    request_fingerprint = fingerprint(operation, application_id, body)
    service = _service(request)
    try:
        async with service.uow() as uow:
            record = await store.get_application(uow.session, application_id, principal, lock=True)
            replay = await _replay(uow.session, principal, key, request_fingerprint)
            if replay is not None:
                return replay
            now = utcnow()
            message_type, payload, status, summary = use_case(record, now)
            record.award = awards.apply(record.award, payload, now, principal.sub)
            _stage_event(
                uow,
                record,
                message_type,
                payload,
                principal=principal,
                now=now,
                status=status,
                summary=summary,
                reasons=list(record.status_reasons) if status.value == record.status else [],
            )
            entries = await _commit_with_key(
                uow, record, principal, key, operation, request_fingerprint, now
            )
    except IntegrityError as exc:
        return await _replay_after_conflict(service, principal, key, request_fingerprint, exc)
    return json_response(to_view(record, entries, principal))


@router.post(
    "/{application_id}/offer/accept",
    response_model=ApplicationView,
    summary="Accept the offer",
    responses=_responses(403, 404, 409, 422),
)
async def accept_offer(
    request: Request,
    application_id: ApplicationId,
    principal: FirmUser,
    idempotency_key: IdempotencyKeyHeader,
) -> Response:
    """Accept the open offer before it expires.

    Emits `application.offer_accepted`: the held space becomes an allocation, the award opens,
    the approved fast-track items are granted and the signing tranche is paid. 409 when the
    offer lapsed or was declined (`reason` says which), 404 for another firm's application.
    """

    def use_case(record: ApplicationRecord, now: datetime) -> tuple[str, BaseModel, Status, str]:
        accepted = offers.accept(record, now)
        return "application.offer_accepted", accepted, Status.OFFER_ACCEPTED, "Offer accepted."

    return await _act(
        request, application_id, principal, idempotency_key, "accept_offer", b"", use_case
    )


@router.post(
    "/{application_id}/offer/decline",
    response_model=ApplicationView,
    summary="Decline the offer",
    responses=_responses(403, 404, 409, 413, 422),
)
async def decline_offer(
    request: Request,
    application_id: ApplicationId,
    principal: FirmUser,
    idempotency_key: IdempotencyKeyHeader,
    body: Annotated[
        offers.DeclineRequest,
        Body(openapi_examples={"decline": {"summary": "Decline", "value": offers.DECLINE_EXAMPLE}}),
    ],
) -> Response:
    """Decline the open offer: the held space is released and the reserved grant returned.

    Emits `application.offer_declined`. 409 when the offer already lapsed or was answered.
    """

    def use_case(record: ApplicationRecord, now: datetime) -> tuple[str, BaseModel, Status, str]:
        declined = offers.decline(record, body, now)
        return "application.offer_declined", declined, Status.OFFER_DECLINED, "Offer declined."

    return await _act(
        request,
        application_id,
        principal,
        idempotency_key,
        "decline_offer",
        body.model_dump_json().encode(),
        use_case,
    )


@router.post(
    "/{application_id}/milestones",
    response_model=ApplicationView,
    summary="Report a milestone",
    responses=_responses(403, 404, 409, 413, 422),
)
async def report_milestone(
    request: Request,
    application_id: ApplicationId,
    principal: FirmUser,
    idempotency_key: IdempotencyKeyHeader,
    body: Annotated[
        offers.MilestoneRequest,
        Body(
            openapi_examples={
                "milestone": {"summary": "Report a milestone", "value": offers.MILESTONE_EXAMPLE}
            }
        ),
    ],
) -> Response:
    """Report the milestone that releases the next tranche, with its evidence.

    Emits `application.milestone_reported`; a reviewer verifies it, and a verified milestone
    releases its tranche (a rejected one comes back with the reason on the timeline). 409 when
    the award is closed or cancelled, or when that milestone is not the one due.
    """

    def use_case(record: ApplicationRecord, now: datetime) -> tuple[str, BaseModel, Status, str]:
        reported = offers.report(record, body, now)
        return (
            "application.milestone_reported",
            reported,
            Status(record.status),
            f"Milestone for tranche {body.sequence} reported: {body.summary}",
        )

    return await _act(
        request,
        application_id,
        principal,
        idempotency_key,
        "milestone",
        body.model_dump_json().encode(),
        use_case,
    )
