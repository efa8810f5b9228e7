"""The application form: which content fields it shows, and the mapping to the API's JSON.

Each input is named by the field's dotted path in the application content (list items by
index, ``incentives.zone_space.0.quantity``), the same path the API's field-level errors
name, so an error lands next to its input without a second mapping.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Final

from contracts.v1.common import DocumentKind, FastTrackItem, GrantPurpose, Sector, UnitType


@dataclass(frozen=True)
class Choice:
    value: str
    label: str


@dataclass(frozen=True)
class Input:
    """One input of the form."""

    path: str
    label: str
    kind: str = "text"  # text, textarea, number, select, checkbox
    hint: str = ""
    choices: tuple[Choice, ...] = ()
    width: str = ""

    @property
    def id(self) -> str:
        return self.path.replace(".", "-")


@dataclass(frozen=True)
class Section:
    title: str
    inputs: tuple[Input, ...]


def _choices(values: Any) -> tuple[Choice, ...]:
    return tuple(Choice(v.value, v.value.replace("_", " ").capitalize()) for v in values)


SECTIONS: Final = (
    Section(
        "Your firm",
        (
            Input("firm.legal_name", "Legal name"),
            Input(
                "firm.country_of_incorporation",
                "Country of incorporation",
                hint="Two-letter ISO code, for example DE",
                width="govuk-input--width-2",
            ),
            Input("firm.registration_number", "Registration number", width="govuk-input--width-20"),
            Input(
                "firm.foreign_ownership_pct",
                "Foreign ownership (%)",
                hint="From 0 to 100",
                width="govuk-input--width-4",
            ),
            Input("firm.parent_companies.0.legal_name", "Parent company (if any): legal name"),
            Input(
                "firm.parent_companies.0.country",
                "Parent company: country",
                hint="Two-letter ISO code",
                width="govuk-input--width-2",
            ),
            Input(
                "firm.parent_companies.0.ownership_pct",
                "Parent company: ownership (%)",
                width="govuk-input--width-4",
            ),
        ),
    ),
    Section(
        "Your proposal",
        (
            Input("proposal.title", "Title"),
            Input("proposal.sector", "Sector", kind="select", choices=_choices(Sector)),
            Input("proposal.ai_use_case", "How you will use AI", kind="textarea"),
            Input(
                "proposal.investment_commitment.amount",
                "Investment you commit",
                hint="An amount, for example 5000000.00",
                width="govuk-input--width-10",
            ),
            Input(
                "proposal.investment_commitment.currency",
                "Currency of the investment",
                hint="ISO code, for example EUR",
                width="govuk-input--width-3",
            ),
            Input(
                "proposal.local_jobs",
                "Local jobs created",
                kind="number",
                width="govuk-input--width-5",
            ),
        ),
    ),
    Section(
        "What you ask for",
        (
            Input(
                "incentives.grant.amount.amount",
                "Grant amount",
                hint="Leave empty if you do not ask for a grant",
                width="govuk-input--width-10",
            ),
            Input(
                "incentives.grant.amount.currency",
                "Grant currency",
                width="govuk-input--width-3",
            ),
            Input(
                "incentives.grant.purpose",
                "Grant purpose",
                kind="select",
                choices=_choices(GrantPurpose),
            ),
            Input("incentives.grant.description", "What the grant pays for", kind="textarea"),
            Input(
                "incentives.zone_space.0.unit_type",
                "Zone space: unit type",
                kind="select",
                choices=_choices(UnitType),
            ),
            Input(
                "incentives.zone_space.0.quantity",
                "Zone space: how many units",
                kind="number",
                width="govuk-input--width-5",
            ),
            Input(
                "incentives.fast_track.0.item",
                "Fast-track item",
                kind="select",
                choices=_choices(FastTrackItem),
            ),
            Input("incentives.fast_track.0.justification", "Why you need it", kind="textarea"),
        ),
    ),
    Section(
        "Your commitments",
        (
            Input(
                "commitments.training.engineers_per_year",
                "Local engineers you train each year",
                kind="number",
                width="govuk-input--width-5",
            ),
            Input("commitments.training.description", "The training", kind="textarea"),
            Input("commitments.university_partnerships.0.university", "Partner university"),
            Input(
                "commitments.university_partnerships.0.scope",
                "Scope of the partnership",
                kind="textarea",
            ),
            Input(
                "commitments.data_protection_attestation.signatory",
                "Data-protection attestation: signed by",
                hint="Name and position",
            ),
            Input(
                "commitments.responsible_ai_attestation.signatory",
                "Responsible-AI attestation: signed by",
                hint="Name and position",
            ),
        ),
    ),
    Section(
        "Supporting documents",
        (
            Input(
                "documents.0.kind",
                "Document: what it is",
                kind="select",
                choices=_choices(DocumentKind),
                hint="The eligibility rules ask for an extract from your company register",
            ),
            Input(
                "documents.0.document_id",
                "Document: reference in the document store",
                width="govuk-input--width-20",
            ),
            Input("documents.0.title", "Document: title"),
            Input(
                "documents.0.sha256",
                "Document: SHA-256 of the file",
                hint="64 hexadecimal characters",
            ),
        ),
    ),
)

INPUTS: Final = {i.path: i for s in SECTIONS for i in s.inputs}
_NUMBERS: Final = frozenset(p for p, i in INPUTS.items() if i.kind == "number")
#: Attestations are accepted and dated when their signatory is given.
_ATTESTATIONS: Final = (
    "commitments.data_protection_attestation",
    "commitments.responsible_ai_attestation",
)


def _set(target: dict[str, Any], path: str, value: Any) -> None:
    parts = path.split(".")
    node: Any = target
    for index, part in enumerate(parts[:-1]):
        following = parts[index + 1]
        key: Any = int(part) if part.isdigit() else part
        if isinstance(node, list):
            while len(node) <= key:
                node.append({})
            node = node[key]
            continue
        if key not in node:
            node[key] = [] if following.isdigit() else {}
        node = node[key]
    leaf = parts[-1]
    node[leaf] = value


def _get(source: Any, path: str) -> Any:
    node = source
    for part in path.split("."):
        if isinstance(node, list):
            index = int(part)
            if index >= len(node):
                return None
            node = node[index]
        elif isinstance(node, dict):
            if part not in node:
                return None
            node = node[part]
        else:
            return None
    return node


def _remove(target: Any, path: str) -> None:
    parts = path.split(".")
    node = _get(target, ".".join(parts[:-1])) if len(parts) > 1 else target
    if isinstance(node, dict):
        node.pop(parts[-1], None)


def _prune(node: Any) -> Any:
    """``node`` without the objects and list items left empty."""
    if isinstance(node, dict):
        kept = {k: _prune(v) for k, v in node.items()}
        return {k: v for k, v in kept.items() if v not in ({}, [])}
    if isinstance(node, list):
        items = [_prune(v) for v in node]
        return [v for v in items if v != {}]
    return node


def to_content(
    form: dict[str, str], base: dict[str, Any] | None = None, *, signed_at: str
) -> dict[str, Any]:
    """The draft content a submitted form describes, over the ``base`` content it edits.

    What the form shows is as the form says: an empty input removes the field (a draft may be
    partial). What it does not show (further list items, other fields of an item, documents'
    other entries) is kept from ``base``, so editing never loses what was sent another way.
    """
    content: dict[str, Any] = copy.deepcopy(base or {})
    for path in INPUTS:
        raw = (form.get(path) or "").strip()
        if not raw:
            _remove(content, path)
            continue
        value: Any = raw
        if path in _NUMBERS:
            value = int(raw) if raw.lstrip("-").isdigit() else raw
        _set(content, path, value)
    for path in _ATTESTATIONS:
        signatory = (form.get(f"{path}.signatory") or "").strip()
        earlier = _get(base or {}, path) or {}
        if not signatory:
            _remove(content, path)
            continue
        same = earlier.get("signatory") == signatory and "attested_at" in earlier
        _set(content, f"{path}.accepted", True)
        _set(content, f"{path}.attested_at", earlier["attested_at"] if same else signed_at)
    pruned: dict[str, Any] = _prune(content)
    return pruned


def from_content(content: dict[str, Any]) -> dict[str, str]:
    """The form values showing ``content``."""
    values: dict[str, str] = {}
    for path in INPUTS:
        value = _get(content, path)
        if value is not None and not isinstance(value, dict | list):
            values[path] = str(value)
    return values


def field_label(path: str) -> str:
    """The label of the input for an API field path, or the path in words."""
    item = INPUTS.get(path)
    if item is not None:
        return item.label
    return path.replace("_", " ").replace(".", ": ")
