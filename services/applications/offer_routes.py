"""The firm's routes after the committee: answer the offer, report milestones.

``POST /v1/applications/{id}/offer/accept``, ``.../offer/decline`` and ``.../milestones``. Each
takes an ``Idempotency-Key``; a retry with the same key and body acts once. The checks are
:mod:`services.applications.offers`; this module writes the event, its timeline entry, the
updated offer view and the key in one unit of work.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Body, Path, Request, Security
from fastapi.responses import Response
from pydantic import BaseModel

from contracts.status import Status
from contracts.v1.common import FastTrackItem
from services.applications import commands, offers
from services.applications.api import (
    Administrator,
    ApplicationId,
    FirmUser,
    IdempotencyKeyHeader,
    _answer,
    _responses,
    _service,
    bearer,
)
from services.applications.models import ApplicationRecord
from services.applications.schemas import ApplicationView
from services.kit.auth import Principal
from services.kit.http import success_headers

router = APIRouter(
    prefix="/v1/applications", tags=["applications"], dependencies=[Security(bearer)]
)


async def _act(
    request: Request,
    application_id: str,
    principal: Principal,
    key: str,
    operation: str,
    body: bytes,
    use_case: commands.AwardUseCase,
) -> Response:
    outcome = await commands.act_on_award(
        _service(request).uow, principal, application_id, key, operation, body, use_case
    )
    return _answer(outcome, principal)


@router.post(
    "/{application_id}/offer/accept",
    response_model=ApplicationView,
    summary="Accept the offer",
    responses={**success_headers(200, replayed=True), **_responses(403, 404, 409)},
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
    responses={**success_headers(200, replayed=True), **_responses(403, 404, 409)},
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
    responses={**success_headers(200, replayed=True), **_responses(403, 404, 409)},
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


@router.post(
    "/{application_id}/fast-track/{item}/revoke",
    response_model=ApplicationView,
    summary="Revoke a granted fast-track item (administrators)",
    responses={**success_headers(200, replayed=True), **_responses(403, 404, 409)},
)
async def revoke_fast_track(
    request: Request,
    application_id: ApplicationId,
    item: Annotated[
        FastTrackItem,
        Path(description="The granted fast-track item to revoke.", examples=["sandbox_access"]),
    ],
    principal: Administrator,
    idempotency_key: IdempotencyKeyHeader,
    body: Annotated[
        offers.RevokeRequest,
        Body(openapi_examples={"revoke": {"summary": "Revoke", "value": offers.REVOKE_EXAMPLE}}),
    ],
) -> Response:
    """Revoke a fast-track item granted on acceptance, with the reason (admin role only).

    Emits `application.fast_track_revoked`, naming the administrator; the firm sees the item
    as revoked, with the reason, on its application and timeline. 409 when the item was not
    granted or is revoked already (`reason` says which), 403 for any other role.
    """

    def use_case(record: ApplicationRecord, now: datetime) -> tuple[str, BaseModel, Status, str]:
        revoked = offers.revoke(record, item, body, now)
        return (
            "application.fast_track_revoked",
            revoked,
            Status(record.status),
            f"Fast-track revoked: {item.replace('_', ' ')}. {body.reason}",
        )

    return await _act(
        request,
        application_id,
        principal,
        idempotency_key,
        "revoke_fast_track",
        # The item is in the path: the same key for another item is another request.
        f"{item.value}\n{body.model_dump_json()}".encode(),
        use_case,
    )
