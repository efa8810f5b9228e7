"""Auditors' pages: find applications, one timeline across services, the state at an instant,
the log's verification and an application's export bundle."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import RedirectResponse, Response

from contracts.status import Status
from services.kit.auth import Principal, Role
from services.portal import logcheck, web
from services.portal.clients import Problem
from services.portal.clients.applications import ApplicationsClient
from services.portal.clients.audit import AuditClient
from services.portal.settings import Settings

router = APIRouter(prefix="/audit")

Auditor = Annotated[Principal, web.role_of(Role.AUDITOR)]
Log = Annotated[AuditClient, Depends(web.audit)]
Applications = Annotated[ApplicationsClient, Depends(web.applications)]

#: What an application id looks like (a search for one goes straight to it).
_APPLICATION_ID = re.compile(r"^app_[A-Za-z0-9_-]+$")


def _instant(value: str) -> tuple[str | None, str | None]:
    """``(RFC 3339 in UTC, error)`` of a ``datetime-local`` input read as UTC."""
    if not value:
        return None, None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None, "Enter a date and time, for example 2026-12-01 10:00"
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z"), None


@router.get("")
async def search(
    request: Request,
    person: Auditor,
    applications: Applications,
    q: Annotated[str, Query(max_length=200)] = "",
    firm: Annotated[str, Query(max_length=100)] = "",
    status: Annotated[str, Query(max_length=40)] = "",
) -> Response:
    wanted = q.strip()
    if _APPLICATION_ID.match(wanted):
        return RedirectResponse(f"/audit/applications/{wanted}", status_code=303)
    params: dict[str, Any] = {"limit": 100}
    if firm.strip():
        params["firm_id"] = firm.strip()
    if status in {s.value for s in Status}:
        params["status"] = status
    page = await applications.list(**params)
    items = page["items"]
    if wanted:
        needle = wanted.lower()
        searched = ("id", "title", "firm_id", "legal_name")
        items = [
            a for a in items if needle in " ".join(str(a.get(k) or "") for k in searched).lower()
        ]
    return web.render(
        request,
        "audit/search.html",
        results=items,
        q=wanted,
        firm=firm.strip(),
        status=status,
        statuses=[s.value for s in Status if s is not Status.DRAFT],
    )


@router.get("/applications/{application_id}")
async def application(
    request: Request,
    application_id: str,
    person: Auditor,
    log: Log,
    as_of: Annotated[str, Query(max_length=40)] = "",
) -> Response:
    history = await log.history(application_id)
    key = await log.text("/v1/log/key")
    check = logcheck.check_history(history, key)
    instant, instant_error = _instant(as_of.strip())
    state: dict[str, Any] | None = None
    state_missing = False
    if instant_error is None:
        try:
            state = await log.state(application_id, instant)
        except Problem as problem:
            if problem.status != 404:
                raise
            state_missing = True
    return web.render(
        request,
        "audit/application.html",
        application_id=application_id,
        history=history,
        records=history["records"],
        check=check,
        state=state,
        state_missing=state_missing,
        as_of=as_of.strip(),
        instant_error=instant_error,
    )


@router.get("/applications/{application_id}/export")
async def export(request: Request, application_id: str, person: Auditor, log: Log) -> Response:
    history = await log.history(application_id)
    key = await log.text("/v1/log/key")
    try:
        bundle = logcheck.export_bundle(history, key)
    except logcheck.BundleError as exc:
        return web.error_page(
            request,
            502,
            "The export does not verify",
            f"The log's answer did not verify, so no bundle was made: {exc}",
        )
    return Response(
        json.dumps(bundle, indent=1) + "\n",
        media_type="application/json",
        headers={
            "Content-Disposition": f'attachment; filename="audit-{application_id}.json"',
        },
    )


@router.get("/log")
async def verify_log(request: Request, person: Auditor, token: web.Token) -> Response:
    settings: Settings = request.app.state.settings
    report = await logcheck.verify_whole_log(settings.audit_url, token, settings.api_timeout)
    return web.render(request, "audit/log.html", report=report)
