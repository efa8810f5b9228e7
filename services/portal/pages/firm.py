"""The firm's pages: its applications, drafts, submission and the timeline."""

from __future__ import annotations

from datetime import UTC
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response

from contracts.envelope import utcnow
from services.kit.auth import Principal, Role
from services.portal import forms, language, web
from services.portal.clients import Problem
from services.portal.clients.applications import ApplicationsClient

router = APIRouter(prefix="/applications")


class NotAFirm(Exception):
    """A staff member opened a firm page."""


def firm(person: web.Person) -> Principal:
    if person.role is not Role.FIRM:
        raise NotAFirm
    return person


Firm = Annotated[Principal, Depends(firm)]
Api = Annotated[ApplicationsClient, Depends(web.applications)]


def _now() -> str:
    return utcnow().astimezone(UTC).isoformat().replace("+00:00", "Z")


def open_stages(view: dict[str, Any]) -> list[str]:
    """The review stages started and not yet decided, from the timeline."""
    started: dict[str, bool] = {}
    for entry in view.get("timeline", []):
        summary = str(entry.get("summary", "")).lower()
        stage = next((s for s in language.STAGE if summary.startswith(s)), None)
        if stage is None:
            continue
        if entry.get("event") == "review.task_assigned":
            started[stage] = True
        elif entry.get("event") == "review.decision_recorded":
            started[stage] = False
    return [s for s, is_open in started.items() if is_open]


def errors_by_field(problem: Problem | None) -> dict[str, str]:
    """The API's field-level errors, keyed by the input they belong to."""
    if problem is None:
        return {}
    found: dict[str, str] = {}
    for error in problem.errors:
        path = error.field.lstrip("#/").replace("/", ".")
        if path.startswith("content."):
            path = path.removeprefix("content.")
        found.setdefault(path, error.message)
    return found


def _form_page(
    request: Request,
    *,
    values: dict[str, str],
    action: str,
    title: str,
    problem: Problem | None = None,
    application: dict[str, Any] | None = None,
    missing: list[str] | None = None,
    amending: bool = False,
) -> Response:
    errors = errors_by_field(problem)
    for path in missing or []:
        errors.setdefault(path, f"Enter {forms.field_label(path).lower()}")
    return web.render(
        request,
        "firm/form.html",
        status_code=422 if problem is not None else 200,
        sections=forms.SECTIONS,
        values=values,
        errors=errors,
        labels={p: forms.field_label(p) for p in errors},
        action=action,
        title=title,
        problem=problem,
        application=application,
        amending=amending,
    )


@router.get("")
async def my_applications(request: Request, person: Firm, api: Api) -> Response:
    page = await api.list(limit=100)
    return web.render(request, "firm/list.html", applications=page["items"])


@router.get("/new")
async def new_draft(request: Request, person: Firm) -> Response:
    return _form_page(request, values={}, action="/applications/new", title="Start an application")


@router.post("/new", dependencies=[web.Csrf])
async def create_draft(request: Request, person: Firm, api: Api) -> Response:
    values = {k: str(v) for k, v in (await request.form()).items()}
    try:
        view = await api.create_draft(forms.to_content(values, signed_at=_now()))
    except Problem as problem:
        if problem.status != 422:
            raise
        return _form_page(
            request,
            values=values,
            action="/applications/new",
            title="Start an application",
            problem=problem,
        )
    return RedirectResponse(f"/applications/{view['id']}", status_code=303)


@router.get("/{application_id}")
async def application_page(
    request: Request, application_id: str, person: Firm, api: Api
) -> Response:
    view = await api.get(application_id)
    return _application(request, view)


def _application(
    request: Request, view: dict[str, Any], problem: Problem | None = None
) -> Response:
    errors = errors_by_field(problem)
    return web.render(
        request,
        "firm/application.html",
        status_code=422 if problem is not None else 200,
        app=view,
        # The milestone form's inputs: an error on any evidence item belongs to the one input.
        milestone_errors={
            name: next((m for p, m in errors.items() if p.split(".")[0] == name), None)
            for name in ("summary", "evidence")
        },
        where=language.where_it_is(view, open_stages(view)),
        problem=problem,
        errors=errors,
        label=forms.field_label,
        timeline=list(reversed(view.get("timeline", []))),
        award=view.get("award"),
        due=milestone_form(view),
    )


#: The two forms over an existing application: path suffix -> (page title, amending).
_FORMS: dict[str, tuple[str, bool]] = {
    "edit": ("Edit your draft", False),
    "amend": ("Amend your application", True),
}


async def _existing_form(
    request: Request, application_id: str, api: ApplicationsClient, which: str
) -> Response:
    view = await api.get(application_id)
    title, amending = _FORMS[which]
    return _form_page(
        request,
        values=forms.from_content(view.get("content") or {}),
        action=f"/applications/{application_id}/{which}",
        title=title,
        application=view,
        amending=amending,
    )


async def _send_form(
    request: Request, application_id: str, api: ApplicationsClient, which: str
) -> Response:
    """Save the draft (``edit``) or send the amendment (``amend``); errors go on the form."""
    values = {k: str(v) for k, v in (await request.form()).items()}
    current = await api.get(application_id)
    content = forms.to_content(values, current.get("content") or {}, signed_at=_now())
    title, amending = _FORMS[which]
    try:
        if amending:
            reason = values.get("amend_reason", "").strip() or "Answering the information request."
            await api.amend(application_id, content, reason)
        else:
            await api.replace_draft(application_id, content)
    except Problem as problem:
        if problem.status not in (409, 422):
            raise
        return _form_page(
            request,
            values=values,
            action=f"/applications/{application_id}/{which}",
            title=title,
            problem=problem,
            application=current,
            amending=amending,
        )
    return RedirectResponse(f"/applications/{application_id}", status_code=303)


@router.get("/{application_id}/edit")
async def edit_page(request: Request, application_id: str, person: Firm, api: Api) -> Response:
    return await _existing_form(request, application_id, api, "edit")


@router.post("/{application_id}/edit", dependencies=[web.Csrf])
async def save_draft(request: Request, application_id: str, person: Firm, api: Api) -> Response:
    return await _send_form(request, application_id, api, "edit")


@router.get("/{application_id}/amend")
async def amend_page(request: Request, application_id: str, person: Firm, api: Api) -> Response:
    return await _existing_form(request, application_id, api, "amend")


@router.post("/{application_id}/amend", dependencies=[web.Csrf])
async def amend(request: Request, application_id: str, person: Firm, api: Api) -> Response:
    return await _send_form(request, application_id, api, "amend")


@router.post("/{application_id}/submit", dependencies=[web.Csrf])
async def submit(request: Request, application_id: str, person: Firm, api: Api) -> Response:
    try:
        await api.submit(application_id)
    except Problem as problem:
        if problem.status not in (409, 422):
            raise
        current = await api.get(application_id)
        if problem.status == 409:
            return _application(request, current, problem)
        # What is missing or invalid is shown on the form, next to each input.
        return _form_page(
            request,
            values=forms.from_content(current.get("content") or {}),
            action=f"/applications/{application_id}/edit",
            title="Complete your application",
            problem=problem,
            application=current,
        )
    return RedirectResponse(f"/applications/{application_id}", status_code=303)


@router.post("/{application_id}/withdraw", dependencies=[web.Csrf])
async def withdraw(
    request: Request,
    application_id: str,
    person: Firm,
    api: Api,
    reason: Annotated[str, Form()] = "",
) -> Response:
    try:
        await api.withdraw(application_id, reason.strip() or "Withdrawn by the firm.")
    except Problem as problem:
        if problem.status not in (409, 422):
            raise
        return _application(request, await api.get(application_id), problem)
    return RedirectResponse(f"/applications/{application_id}", status_code=303)


@router.post("/{application_id}/offer/accept", dependencies=[web.Csrf])
async def accept_offer(request: Request, application_id: str, person: Firm, api: Api) -> Response:
    try:
        await api.accept_offer(application_id)
    except Problem as problem:
        if problem.status not in (409, 422):
            raise
        return _application(request, await api.get(application_id), problem)
    return RedirectResponse(f"/applications/{application_id}#award", status_code=303)


@router.post("/{application_id}/offer/decline", dependencies=[web.Csrf])
async def decline_offer(
    request: Request,
    application_id: str,
    person: Firm,
    api: Api,
    decline_reason: Annotated[str, Form()] = "",
) -> Response:
    try:
        await api.decline_offer(application_id, decline_reason.strip() or None)
    except Problem as problem:
        if problem.status not in (409, 422):
            raise
        return _application(request, await api.get(application_id), problem)
    return RedirectResponse(f"/applications/{application_id}", status_code=303)


@router.post("/{application_id}/milestones", dependencies=[web.Csrf])
async def report_milestone(
    request: Request,
    application_id: str,
    person: Firm,
    api: Api,
    sequence: Annotated[int, Form()],
    summary: Annotated[str, Form()] = "",
    evidence: Annotated[str, Form()] = "",
) -> Response:
    documents = [e.strip() for e in evidence.replace("\n", ",").split(",") if e.strip()]
    try:
        await api.report_milestone(application_id, sequence, summary.strip(), documents)
    except Problem as problem:
        if problem.status not in (409, 422):
            raise
        return _application(request, await api.get(application_id), problem)
    return RedirectResponse(f"/applications/{application_id}#award", status_code=303)


def milestone_form(view: dict[str, Any]) -> dict[str, Any] | None:
    """The tranche the milestone form offers to report, or None for no form.

    Shown while the application allows reporting, for the tranche the applications service
    names as due (``milestone_due``). That service has the last word (409 when that milestone
    is no longer the one due), shown on the page.
    """
    award = view.get("award")
    if "report_milestone" not in view.get("allowed_actions", []) or not award:
        return None
    due = award.get("milestone_due")
    return next((t for t in award.get("tranches", []) if t.get("sequence") == due), None)


__all__ = ["NotAFirm", "router"]
