"""The conflict-of-interest rule: name variants and identifiers match, near namesakes do not."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from contracts.conflicts import (
    Organisation,
    conflicts,
    firm_organisations,
    named,
    normalise_organisation,
    normalise_register_number,
)
from contracts.v1.applications import CONTENT_EXAMPLE, ApplicationContent, Firm, ParentCompany
from contracts.v1.desk import OrganisationIdentifier, ReviewerProfile, ReviewerRole

FIRM_LEI = "391200ACMEVISIONAI97"
PARENT_LEI = "529900ACMEHOLDINGS14"


def content(**firm: Any) -> ApplicationContent:
    """The contract's example application, with ``firm`` fields changed."""
    base = ApplicationContent.model_validate(CONTENT_EXAMPLE)
    return base.model_copy(update={"firm": base.firm.model_copy(update=firm)})


FIRM = content(
    lei=FIRM_LEI,
    parent_companies=[
        ParentCompany(
            legal_name="Acme Holdings SE",
            country="DE",
            ownership_pct="60",
            registration_number="HRB 654321",
            lei=PARENT_LEI,
        )
    ],
)
ORGS = firm_organisations(FIRM)


def reviewer(**declared: Any) -> ReviewerProfile:
    return ReviewerProfile(
        reviewer_id="rev.a@gaip.example", name="A", roles=[ReviewerRole.TECHNICAL], **declared
    )


@pytest.mark.parametrize(
    "declared",
    [
        "Acme Vision AI GmbH",
        "Acme Vision-AI GmbH.",  # hyphen and trailing punctuation
        "ACME VISION AI GMBH",  # case
        "acme vision ai gmbh",
        "  Acme   Vision\tAI  GmbH ",  # spacing
        "Acme VisionAI GmbH",  # no space at all
        "Acme Vision AI G.m.b.H.",  # punctuation inside the legal form
        "Acme, Vision & AI (GmbH)",  # symbols and brackets
        # full width
        "\uff21\uff43\uff4d\uff45 \uff36\uff49\uff53\uff49\uff4f\uff4e \uff21\uff29 GmbH",
        "Acme\u3000Vision\u00a0AI GmbH",  # ideographic and no-break spaces
    ],
)
def test_name_variants_are_conflicts(declared: str) -> None:
    assert conflicts(reviewer(affiliations=[declared]), ORGS) == ["Acme Vision AI GmbH"]
    assert conflicts(reviewer(ownership_interests=[declared]), ORGS) == ["Acme Vision AI GmbH"]


def test_the_full_width_variant_folds_to_the_same_form() -> None:
    full_width = "\uff21\uff43\uff4d\uff45 Vision\uff0dAI GmbH\uff0e"
    assert normalise_organisation(full_width) == normalise_organisation("Acme Vision AI GmbH")
    assert normalise_organisation("Acme Vision-AI GmbH.") == "acmevisionaigmbh"


@pytest.mark.parametrize(
    "declared",
    [
        "Acme",  # a prefix of the firm's name
        "Acme Vision",
        "Acme Vision AI",  # the firm's name without its legal form
        "Acme Vision AI GmbH & Co. KG",  # a longer name starting with the firm's
        "Acme Holdings AG",  # the parent's name with another legal form
        "Acme Visions AI GmbH",
        "...",  # nothing left after folding: matches nothing
    ],
)
def test_unrelated_firms_sharing_a_prefix_are_no_conflict(declared: str) -> None:
    assert conflicts(reviewer(affiliations=[declared]), ORGS) == []


def test_the_parent_company_counts_too() -> None:
    assert conflicts(reviewer(ownership_interests=["acme holdings se"]), ORGS) == [
        "Acme Holdings SE"
    ]


@pytest.mark.parametrize(
    ("identifier", "hit"),
    [
        ({"register_country": "DE", "register_number": "HRB 123456"}, "Acme Vision AI GmbH"),
        ({"register_country": "DE", "register_number": "hrb-123456"}, "Acme Vision AI GmbH"),
        ({"register_country": "DE", "register_number": "HRB123456"}, "Acme Vision AI GmbH"),
        ({"register_country": "DE", "register_number": "HRB 654321"}, "Acme Holdings SE"),
        ({"lei": FIRM_LEI}, "Acme Vision AI GmbH"),
        ({"lei": PARENT_LEI}, "Acme Holdings SE"),
    ],
)
def test_an_identifier_match_is_a_conflict_whatever_the_names(
    identifier: dict[str, str], hit: str
) -> None:
    profile = reviewer(
        affiliations=["Something Else Entirely Ltd"], declared_identifiers=[identifier]
    )
    assert conflicts(profile, ORGS) == [hit]


@pytest.mark.parametrize(
    "identifier",
    [
        {"register_country": "AT", "register_number": "HRB 123456"},  # another country's register
        {"register_country": "DE", "register_number": "HRB 1234567"},
        {"lei": "5493001KJTIIGC8Y1R12"},
    ],
)
def test_other_identifiers_are_no_conflict(identifier: dict[str, str]) -> None:
    assert conflicts(reviewer(declared_identifiers=[identifier]), ORGS) == []


def test_organisations_are_the_firm_and_its_parents_with_their_identifiers() -> None:
    assert (
        Organisation("Acme Vision AI GmbH", "DE", "HRB 123456", FIRM_LEI),
        Organisation("Acme Holdings SE", "DE", "HRB 654321", PARENT_LEI),
    ) == ORGS
    assert [o.name for o in firm_organisations(content(parent_companies=[]))] == [
        "Acme Vision AI GmbH"
    ]


def test_names_only_and_register_numbers() -> None:
    assert named(["Acme", "Acme"]) == (Organisation("Acme"),)
    assert normalise_register_number(" HRB 123.456 ") == "hrb123456"


# --- the identifier fields of the contracts ----------------------------------------------------


def test_an_lei_needs_valid_check_digits() -> None:
    ok = {**CONTENT_EXAMPLE["firm"], "lei": FIRM_LEI}  # type: ignore[dict-item]
    assert Firm.model_validate(ok).lei == FIRM_LEI
    for bad in ("391200ACMEVISIONAI98", "391200acmevisionai97", "391200ACMEVISIONAI9", "X" * 20):
        with pytest.raises(ValidationError):
            Firm.model_validate({**ok, "lei": bad})


def test_a_declared_identifier_is_a_register_entry_or_an_lei() -> None:
    assert OrganisationIdentifier(register_country="DE", register_number="HRB 1").lei is None
    assert OrganisationIdentifier(lei=PARENT_LEI).register_number is None
    for bad in (
        {},
        {"register_country": "DE"},
        {"register_number": "HRB 1"},
        {"register_country": "ZZ", "register_number": "HRB 1"},
        {"lei": "529900ACMEHOLDINGS15"},
    ):
        with pytest.raises(ValidationError):
            OrganisationIdentifier.model_validate(bad)
