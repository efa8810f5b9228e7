"""The firm-facing HTTP API under ``/v1/applications``.

Routes are thin: they check the caller, call one command of :mod:`services.applications.commands`
(which writes the application, its timeline entry, its idempotency key and its outbox message in
one unit of work with one commit), and map its outcome to a response. Responses are serialised
once, straight from the view models (FastAPI would otherwise validate the whole application
content a second time on the way out).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Final

from fastapi import APIRouter, Body, Depends, Path, Query, Request, Security
from fastapi.responses import Response

from contracts.status import Status
from contracts.v1.applications import CONTENT_EXAMPLE, ApplicationContent
from services.applications import commands, store
from services.applications.commands import Outcome
from services.applications.schemas import (
    AMEND_EXAMPLE,
    CANCEL_EXAMPLE,
    PARTIAL_CONTENT_EXAMPLE,
    WITHDRAW_EXAMPLE,
    AmendRequest,
    ApplicationContentDraft,
    ApplicationPage,
    ApplicationView,
    CancelRequest,
    WithdrawRequest,
)
from services.applications.views import json_response, to_summary, to_view
from services.kit.auth import Principal, Role, require_roles
from services.kit.errors import Forbidden, ValidationFailed
from services.kit.http import (
    REPLAYED_HEADER,
    Caller,
    bearer_scheme,
    idempotency_key,
    location,
    problem_responses,
    success_headers,
)
from services.kit.runtime import Service

#: Where the applications live.
PREFIX: Final = "/v1/applications"

_IDENTIFIER = re.compile(r"^\S{1,100}$")

# --- OpenAPI: authentication ---------------------------------------------------------------------

bearer = bearer_scheme(
    "A JWT signed by the program. Firms hold the role `firm:<firm-id>`; staff hold "
    "`reviewer`, `supervisor`, `auditor` or `admin`. For development, "
    "`incentives token --role firm --firm ACME` prints one."
)

router = APIRouter(prefix=PREFIX, tags=["applications"], dependencies=[Security(bearer)])

# --- parameters ----------------------------------------------------------------------------------

ApplicationId = Annotated[
    str,
    Path(
        description="The application id, as returned when it was created.",
        examples=["app_3f2a9c0d41e84b6f9d7e5a1b2c3d4e5f"],
        max_length=100,
        pattern=r"^\S+$",
    ),
]

_KEY_DOC = (
    "A unique key per intended operation (a UUID is a good choice), 8 to 200 printable ASCII "
    "characters. Retrying with the same key and the same body acts once: the retry gets the "
    f"first response's status code and the application as it is now (header "
    f"`{REPLAYED_HEADER}: true`). The same key with a different body is refused with 422. Keys "
    "are scoped to the firm and kept."
)
IdempotencyKeyHeader = Annotated[str, idempotency_key(_KEY_DOC)]
OptionalIdempotencyKeyHeader = Annotated[str | None, idempotency_key(_KEY_DOC, optional=True)]

_DRAFT_EXAMPLES = {
    "partial": {
        "summary": "A partial draft",
        "description": "Fill in what you have; every field is optional in a draft.",
        "value": PARTIAL_CONTENT_EXAMPLE,
    },
    "complete": {
        "summary": "A complete application",
        "description": "Everything the program judges; this draft can be submitted as is.",
        "value": CONTENT_EXAMPLE,
    },
}
_CONTENT_EXAMPLES = {
    "complete": {
        "summary": "A complete application",
        "description": (
            "A firm asking for a grant, GPU rack units and office seats, and sandbox access, for "
            "a health-sector proposal, with training, university and exchange commitments, both "
            "attestations and one supporting document."
        ),
        "value": CONTENT_EXAMPLE,
    }
}

# --- callers -------------------------------------------------------------------------------------


async def _firm_user(principal: Caller) -> Principal:
    """The caller, if a firm user: only firms change applications; staff read them."""
    if principal.role is not Role.FIRM:
        raise Forbidden(
            f"role {principal.role} has read-only access to applications; only firms change them"
        )
    if principal.firm_id is None or not _IDENTIFIER.fullmatch(principal.firm_id):
        raise Forbidden("the token's firm id is not a valid identifier (no spaces, 1-100 chars)")
    return principal


FirmUser = Annotated[Principal, Depends(_firm_user)]
#: Administrative actions (cancellation).
Administrator = Annotated[Principal, require_roles(Role.ADMIN)]


def _service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


def _answer(outcome: Outcome, principal: Principal) -> Response:
    """The outcome of a command as a response: the view, its status and headers."""
    headers: dict[str, str] = {}
    if outcome.status_code == 201:
        headers["Location"] = location(PREFIX, outcome.record.id)
    if outcome.replayed:
        headers[REPLAYED_HEADER] = "true"
    view = to_view(outcome.record, outcome.timeline, principal)
    return json_response(view, outcome.status_code, headers or None)


def _responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return problem_responses(*statuses)


# --- routes: reading -----------------------------------------------------------------------------


@router.get(
    "",
    response_model=ApplicationPage,
    summary="List applications",
    responses=_responses(),
)
async def list_applications(
    request: Request,
    principal: Caller,
    status: Annotated[
        Status | None,
        Query(description="Only applications with this status.", examples=["eligible"]),
    ] = None,
    firm_id: Annotated[
        str | None,
        Query(
            description="Staff only: only this firm's applications (firms always see their own).",
            examples=["ACME"],
            max_length=100,
        ),
    ] = None,
    limit: Annotated[
        int, Query(ge=1, le=100, description="Page size, 1 to 100.", examples=[20])
    ] = 20,
    cursor: Annotated[
        str | None,
        Query(
            max_length=400,
            description="The `next_cursor` of the previous page; omit for the first page.",
            examples=["MjAyNi0xMS0yNlQxMDozMDowMCswMDowMHxhcHBfM2Yy"],
        ),
    ] = None,
) -> Response:
    """A firm's own applications (drafts included), newest first; staff see every submitted one.

    Paginated by cursor: follow `next_cursor` until it is null.
    """
    try:
        after = store.Cursor.decode(cursor) if cursor else None
    except store.InvalidCursor as exc:
        raise ValidationFailed(
            "invalid cursor",
            extensions={
                "errors": [
                    {
                        "parameter": "cursor",
                        "field": "cursor",
                        "message": str(exc),
                        "type": "cursor",
                    }
                ]
            },
        ) from None
    # Views are built inside the unit of work: leaving it rolls back, which expires the rows.
    async with _service(request).uow() as uow:
        records, next_cursor = await store.list_applications(
            uow.session, principal, limit=limit, cursor=after, status=status, firm_id=firm_id
        )
        page = ApplicationPage(
            items=[to_summary(r) for r in records],
            next_cursor=next_cursor.encode() if next_cursor else None,
        )
    return json_response(page)


@router.get(
    "/{application_id}",
    response_model=ApplicationView,
    summary="Get an application with its status and timeline",
    responses=_responses(404),
)
async def get_application(
    request: Request, application_id: ApplicationId, principal: Caller
) -> Response:
    """The application, its status (with the eligibility rule set that decided), and its timeline.

    A firm sees only its own applications: any other id answers 404.
    """
    async with _service(request).uow() as uow:
        record = await store.get_application(uow.session, application_id, principal)
        entries = await store.timeline(uow.session, application_id)
        view = to_view(record, entries, principal)
    return json_response(view)


# --- routes: drafts ------------------------------------------------------------------------------


@router.post(
    "",
    status_code=201,
    response_model=ApplicationView,
    summary="Create a draft",
    responses={**success_headers(201, location=True), **_responses(403)},
)
async def create_draft(
    request: Request,
    principal: FirmUser,
    draft: Annotated[ApplicationContentDraft, Body(openapi_examples=_DRAFT_EXAMPLES)],
) -> Response:
    """Start an application. Any part of the content may be missing; whatever is given is checked.

    The response lists `missing_for_submission`: what is still needed before submitting.
    """
    content = draft.model_dump(mode="json", exclude_none=True)
    outcome = await commands.create_draft(_service(request).uow, principal, content)
    return _answer(outcome, principal)


@router.put(
    "/{application_id}",
    response_model=ApplicationView,
    summary="Replace a draft",
    responses=_responses(403, 404, 409),
)
async def replace_draft(
    request: Request,
    application_id: ApplicationId,
    principal: FirmUser,
    draft: Annotated[ApplicationContentDraft, Body(openapi_examples=_DRAFT_EXAMPLES)],
) -> Response:
    """Replace the whole draft content. Only drafts can be edited: 409 once submitted."""
    content = draft.model_dump(mode="json", exclude_none=True)
    outcome = await commands.edit_draft(
        _service(request).uow, principal, application_id, replacement=content
    )
    return _answer(outcome, principal)


@router.patch(
    "/{application_id}",
    response_model=ApplicationView,
    summary="Edit part of a draft (JSON merge patch)",
    responses=_responses(403, 404, 409),
)
async def patch_draft(
    request: Request,
    application_id: ApplicationId,
    principal: FirmUser,
    patch: Annotated[
        ApplicationContentDraft,
        Body(
            media_type="application/merge-patch+json",
            openapi_examples={
                "set": {
                    "summary": "Set some fields",
                    "value": {"proposal": {"local_jobs": 40}},
                },
                "remove": {
                    "summary": "Remove a field",
                    "description": "`null` removes a field (RFC 7396).",
                    "value": {"incentives": {"grant": None}},
                },
            },
        ),
    ],
) -> Response:
    """Change parts of the draft (RFC 7396): objects merge, `null` removes, lists are replaced.

    Only drafts can be edited: 409 once submitted.
    """
    outcome = await commands.edit_draft(
        _service(request).uow,
        principal,
        application_id,
        patch=patch.model_dump(mode="json", exclude_unset=True),
    )
    return _answer(outcome, principal)


@router.delete(
    "/{application_id}",
    status_code=204,
    summary="Delete a draft",
    responses=_responses(403, 404, 409),
)
async def delete_draft(
    request: Request, application_id: ApplicationId, principal: FirmUser
) -> Response:
    """Delete a draft. Submitted applications are never deleted: withdraw them instead (409)."""
    await commands.delete_draft(_service(request).uow, principal, application_id)
    return Response(status_code=204)


# --- routes: submission --------------------------------------------------------------------------


@router.post(
    "/submissions",
    status_code=201,
    response_model=ApplicationView,
    summary="Submit a complete application in one step",
    responses={**success_headers(201, location=True, replayed=True), **_responses(403)},
)
async def submit_application(
    request: Request,
    principal: FirmUser,
    idempotency_key: IdempotencyKeyHeader,
    content: Annotated[ApplicationContent, Body(openapi_examples=_CONTENT_EXAMPLES)],
) -> Response:
    """Create and submit an application at once, for clients that build it in one go.

    The record and its `application.submitted` event are written in one transaction. With the
    same `Idempotency-Key` and body, a retry returns the first response and submits nothing.
    """
    outcome = await commands.submit_new(_service(request).uow, principal, content, idempotency_key)
    return _answer(outcome, principal)


@router.post(
    "/{application_id}/submit",
    response_model=ApplicationView,
    summary="Submit a draft",
    responses={**success_headers(200, replayed=True), **_responses(403, 404, 409)},
)
async def submit_draft(
    request: Request,
    application_id: ApplicationId,
    principal: FirmUser,
    idempotency_key: IdempotencyKeyHeader,
    content: Annotated[
        ApplicationContent | None,
        Body(
            description=(
                "Optional: the complete content to submit, replacing the draft's. Without a "
                "body, the draft itself is submitted."
            ),
            openapi_examples=_CONTENT_EXAMPLES,
        ),
    ] = None,
) -> Response:
    """Submit the draft. It must be complete: a 422 lists every missing or invalid field.

    The record and its `application.submitted` event are written in one transaction. With the
    same `Idempotency-Key` and body, a retry returns the first response and submits nothing.
    """
    outcome = await commands.submit_draft(
        _service(request).uow, principal, application_id, idempotency_key, content
    )
    return _answer(outcome, principal)


# --- routes: after submission --------------------------------------------------------------------


@router.post(
    "/{application_id}/withdraw",
    response_model=ApplicationView,
    summary="Withdraw an application",
    responses={**success_headers(200, replayed=True), **_responses(403, 404, 409)},
)
async def withdraw(
    request: Request,
    application_id: ApplicationId,
    principal: FirmUser,
    body: Annotated[
        WithdrawRequest,
        Body(openapi_examples={"withdraw": {"summary": "Withdraw", "value": WITHDRAW_EXAMPLE}}),
    ],
    idempotency_key: OptionalIdempotencyKeyHeader = None,
) -> Response:
    """Withdraw a submitted application, at any stage before it is closed.

    Emits `application.withdrawn`: the workflow stops, held zone space is released and an open
    award is cancelled. Drafts are deleted rather than withdrawn.
    """
    outcome = await commands.withdraw(
        _service(request).uow, principal, application_id, body, idempotency_key
    )
    return _answer(outcome, principal)


@router.post(
    "/{application_id}/cancel",
    response_model=ApplicationView,
    summary="Cancel an approved application (administrators)",
    responses={**success_headers(200, replayed=True), **_responses(403, 404, 409)},
)
async def cancel(
    request: Request,
    application_id: ApplicationId,
    principal: Administrator,
    body: Annotated[
        CancelRequest,
        Body(openapi_examples={"cancel": {"summary": "Cancel", "value": CANCEL_EXAMPLE}}),
    ],
    idempotency_key: IdempotencyKeyHeader,
) -> Response:
    """Cancel an approved application whose journey is still open (admin role only).

    Emits `application.cancelled`, naming the administrator: the workflow releases held zone
    space and cancels the award (what is reserved and not paid goes back), and its
    `application.compensated` closes the application as `cancelled`. 403 for any other role,
    409 before approval or once the application is closed or completed.
    """
    outcome = await commands.cancel(
        _service(request).uow, principal, application_id, body, idempotency_key
    )
    return _answer(outcome, principal)


@router.post(
    "/{application_id}/amend",
    response_model=ApplicationView,
    summary="Amend an application while information is requested",
    responses={**success_headers(200, replayed=True), **_responses(403, 404, 409)},
)
async def amend(
    request: Request,
    application_id: ApplicationId,
    principal: FirmUser,
    body: Annotated[
        AmendRequest,
        Body(openapi_examples={"amend": {"summary": "Amend", "value": AMEND_EXAMPLE}}),
    ],
    idempotency_key: OptionalIdempotencyKeyHeader = None,
) -> Response:
    """Send a new revision of the application, answering the program's information request.

    Allowed only while the status is `information_requested` (409 otherwise). Emits
    `application.amended` with the changed fields; eligibility then assesses the new revision.
    """
    outcome = await commands.amend(
        _service(request).uow, principal, application_id, body, idempotency_key
    )
    return _answer(outcome, principal)
