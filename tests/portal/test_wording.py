"""The portal's pure parts: plain-language wording, the form mapping, and its settings."""

from __future__ import annotations

import copy
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from services.portal import forms, language
from services.portal.clients import FieldProblem, Problem
from services.portal.main import create_app
from services.portal.pages.firm import errors_by_field, open_stages
from services.portal.settings import Settings, SignIn

#: What the workflow's validator says to a conflicted reviewer (workflows/policy.py).
CONFLICT_DETAIL = (
    "rev.tanaka@gaip.example declares an affiliation or ownership interest in Acme Holdings SE "
    "(the applicant or its parent company) and may not decide this application."
)


def test_a_conflict_refusal_names_the_organisation_in_the_reviewers_terms() -> None:
    said = language.refusal(
        "conflict_of_interest", CONFLICT_DETAIL, language.conflicts_in(CONFLICT_DETAIL)
    )
    assert said == (
        "You declared an interest in Acme Holdings SE, so you cannot review this application."
    )


def test_every_refusal_code_of_the_workflow_reads_plainly() -> None:
    from contracts.v1.desk import DecisionRefusal

    for code in DecisionRefusal:
        said = language.refusal(code.value, "raw detail")
        assert said != "raw detail", code
        assert "_" not in said, code


def test_the_firm_reads_which_reviewer_has_its_application_since_when() -> None:
    view = {
        "status": "under_review",
        "status_changed_at": "2026-03-03T09:00:00Z",
        "timeline": [
            {"event": "review.task_assigned", "summary": "Technical review started."},
            {
                "event": "review.task_assigned",
                "summary": "Security and data-protection review started.",
            },
            {"event": "review.decision_recorded", "summary": "Technical review approved."},
            {
                "event": "review.decision_recorded",
                "summary": "Security and data-protection review approved.",
            },
            {"event": "review.task_assigned", "summary": "Finance review started."},
        ],
    }
    stages = open_stages(view)
    assert stages == ["finance"]
    assert language.where_it_is(view, stages) == (
        "Your application is with the finance reviewer since 3 March 2026."
    )


def test_the_form_round_trips_the_content_it_shows() -> None:
    form = {
        "firm.legal_name": "Acme Vision AI GmbH",
        "firm.parent_companies.0.legal_name": "Acme Holdings SE",
        "proposal.local_jobs": "40",
        "proposal.sector": "health",
        "commitments.data_protection_attestation.signatory": "Dr. Jana Weber",
        "incentives.grant.amount.amount": "",
    }
    content = forms.to_content(form, signed_at="2026-11-20T09:00:00Z")
    assert content["firm"]["parent_companies"] == [{"legal_name": "Acme Holdings SE"}]
    assert content["proposal"] == {"local_jobs": 40, "sector": "health"}
    assert "incentives" not in content  # empty inputs stay out of a draft
    assert content["commitments"]["data_protection_attestation"] == {
        "signatory": "Dr. Jana Weber",
        "accepted": True,
        "attested_at": "2026-11-20T09:00:00Z",
    }
    assert forms.from_content(content) == {k: v for k, v in form.items() if v}
    # Saved again later by the same signatory, the attestation keeps its date.
    again = forms.to_content(form, content, signed_at="2026-11-30T09:00:00Z")
    attested = again["commitments"]["data_protection_attestation"]["attested_at"]
    assert attested == "2026-11-20T09:00:00Z"


def test_api_field_errors_land_on_the_inputs_of_the_same_path() -> None:
    problem = Problem(
        status=422,
        title="Validation failed",
        detail="",
        errors=[
            FieldProblem("firm.foreign_ownership_pct", "must be at most 100"),
            FieldProblem("#/content/proposal/title", "field required"),
        ],
    )
    errors = errors_by_field(problem)
    assert errors == {
        "firm.foreign_ownership_pct": "must be at most 100",
        "proposal.title": "field required",
    }
    assert all(path in forms.INPUTS for path in errors)


def test_production_mode_refuses_the_dev_sign_in_and_the_default_session_key() -> None:
    strong = "k" * 40
    with pytest.raises(ValidationError, match="needs dev mode"):
        Settings(dev_mode=False, jwt_secret=strong, session_secret=strong)
    with pytest.raises(ValidationError, match="SESSION_SECRET"):
        Settings(dev_mode=False, jwt_secret=strong, sign_in=SignIn.NONE)
    with pytest.raises(ValueError, match="needs INCENTIVES_OIDC_ISSUER"):
        Settings(sign_in=SignIn.OIDC)
    settings = Settings(dev_mode=False, jwt_secret=strong, session_secret=strong, sign_in="none")
    assert settings.sign_in is SignIn.NONE


async def test_without_dev_sign_in_the_portal_says_sign_in_is_not_available(
    tmp_path: Path,
) -> None:
    strong = "k" * 40
    settings = Settings(
        dev_mode=False, jwt_secret=strong, session_secret=strong, sign_in="none", var_dir=tmp_path
    )
    transport = httpx.ASGITransport(app=create_app(settings))
    async with httpx.AsyncClient(transport=transport, base_url="http://portal") as client:
        page = await client.get("/sign-in")
        forced = await client.post("/sign-in", data={"identity": "admin", "csrf_token": ""})
        health = await client.get("/health")
    assert page.status_code == 503
    assert "Sign-in is not available yet" in page.text
    assert forced.status_code == 403  # no session, so no CSRF token: refused before anything
    assert health.json() == {"status": "ok", "service": "portal"}
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]


def test_editing_keeps_what_the_form_does_not_show() -> None:
    from tests.applications.helpers import content

    sent = content()  # two zone-space items, preferred zones, exchange programmes
    edited = forms.to_content(
        {**forms.from_content(sent), "commitments.training.engineers_per_year": "45"},
        sent,
        signed_at="2026-11-30T09:00:00Z",
    )
    expected = copy.deepcopy(sent)
    expected["commitments"]["training"]["engineers_per_year"] = 45
    assert edited == expected
