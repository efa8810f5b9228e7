"""Builders for eligibility tests: realistic applications and small rule-set files."""

from __future__ import annotations

import json
import re
import uuid
from datetime import datetime
from typing import Any

from contracts import catalog
from contracts.envelope import Actor, Envelope
from contracts.v1.applications import (
    CONTENT_EXAMPLE,
    ApplicationAmended,
    ApplicationContent,
    ApplicationSubmitted,
)

_STEP = re.compile(r"([a-z_]+)|\[([0-9]+)\]")


def content_dict(changes: dict[str, Any] | None = None) -> dict[str, Any]:
    """The contract's example application (complete and eligible), with dotted-path changes.

    ``{"proposal.sector": "other", "documents[0].kind": "other"}`` sets those fields.
    """
    # Through JSON, not deepcopy: the example shares one attestation dict between two fields,
    # and deepcopy would keep them shared.
    data: dict[str, Any] = json.loads(json.dumps(CONTENT_EXAMPLE))
    for path, value in (changes or {}).items():
        steps = [(name, int(index) if index else None) for name, index in _STEP.findall(path)]
        target: Any = data
        for name, index in steps[:-1]:
            target = target[name] if index is None else target[index]
        last_name, last_index = steps[-1]
        if last_index is None:
            target[last_name] = value
        else:
            target[last_index] = value
    return data


def content(changes: dict[str, Any] | None = None) -> ApplicationContent:
    """:func:`content_dict` validated as the contract's ``ApplicationContent``."""
    return ApplicationContent.model_validate(content_dict(changes))


def money(amount: str, currency: str = "EUR") -> dict[str, str]:
    """A money value as the wire has it."""
    return {"amount": amount, "currency": currency}


def new_application_id() -> str:
    """A unique application id, so tests sharing a broker never see each other's subjects."""
    return f"app_{uuid.uuid4().hex[:16]}"


def submitted(
    application_id: str,
    *,
    submitted_at: datetime,
    changes: dict[str, Any] | None = None,
    event_id: uuid.UUID | None = None,
    correlation_id: uuid.UUID | None = None,
) -> Envelope[Any]:
    """An ``application.submitted`` envelope from the firm ACME."""
    payload = ApplicationSubmitted(
        application_id=application_id,
        firm_id="ACME",
        revision=1,
        content=content(changes),
        submitted_at=submitted_at,
    )
    return catalog.make_envelope(
        "application.submitted",
        payload,
        subject=application_id,
        actor=Actor(kind="firm", id="jana@acme.example", firm_id="ACME"),
        producer="applications",
        correlation_id=correlation_id or uuid.uuid4(),
        event_id=event_id,
        occurred_at=submitted_at,
    )


def amended(
    application_id: str,
    *,
    revision: int,
    submitted_at: datetime,
    amended_at: datetime,
    changes: dict[str, Any] | None = None,
    correlation_id: uuid.UUID | None = None,
) -> Envelope[Any]:
    """An ``application.amended`` envelope (the whole content, as the contract carries it)."""
    payload = ApplicationAmended(
        application_id=application_id,
        firm_id="ACME",
        revision=revision,
        content=content(changes),
        changed_fields=sorted({p.split("[")[0] for p in changes or {"proposal": None}}),
        reason="Restated the investment plan as the reviewer asked.",
        submitted_at=submitted_at,
        amended_at=amended_at,
    )
    return catalog.make_envelope(
        "application.amended",
        payload,
        subject=application_id,
        actor=Actor(kind="firm", id="jana@acme.example", firm_id="ACME"),
        producer="applications",
        correlation_id=correlation_id or uuid.uuid4(),
        occurred_at=amended_at,
    )


def rule_set_toml(
    rules: str,
    *,
    rule_set_id: str = "test-rules",
    version: str = "1",
    effective_from: str = "2026-01-01",
    extra: str = "",
) -> bytes:
    """A minimal rule-set file around ``rules`` (``[[rules]]`` tables as TOML text)."""
    return (
        f'[rule_set]\nid = "{rule_set_id}"\nversion = "{version}"\n'
        f"effective_from = {effective_from}\n\n{extra}\n{rules}"
    ).encode()


PASSING_RULE = """
[[rules]]
id = "has_jobs"
expression = "proposal.local_jobs > 0"
explanation = "The proposal creates no local jobs."
"""
