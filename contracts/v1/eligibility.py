"""Eligibility events: the outcome of evaluating a versioned rule set against an application."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator
from pydantic.config import JsonDict

from contracts.envelope import UtcDatetime
from contracts.v1.common import (
    PAYLOAD_CONFIG,
    EligibilityOutcome,
    FieldPath,
    Identifier,
    LongText,
    Sha256Hex,
)

#: A rule-set version label, e.g. ``2026.1``.
RuleSetVersion = Annotated[
    str, StringConstraints(min_length=1, max_length=50, pattern=r"^[0-9A-Za-z][0-9A-Za-z.+_-]*$")
]

RULE_RESULT_EXAMPLE: JsonDict = {
    "rule_id": "priority_sector",
    "passed": True,
    "explanation": "The proposal serves a priority sector (health).",
}


class RuleResult(BaseModel):
    """The outcome of one rule of the rule set."""

    model_config = ConfigDict(
        **PAYLOAD_CONFIG, json_schema_extra={"examples": [RULE_RESULT_EXAMPLE]}
    )

    rule_id: Identifier = Field(
        description="The rule's id, unique within its rule set.",
        examples=["priority_sector", "minimum_investment"],
    )
    passed: bool = Field(description="Whether the application satisfies the rule.", examples=[True])
    explanation: LongText = Field(
        description="Why, in words a firm can read.",
        examples=[
            "The proposal serves a priority sector (health).",
            "The investment commitment is below the EUR 1,000,000 minimum.",
        ],
    )


class EligibilityAssessed(BaseModel):
    """Event ``eligibility.assessed``: a rule set was evaluated against one application revision.

    The rule set in force when the application was *submitted* decides. The decision names that
    rule set by id, version and content hash, so an auditor can re-run exactly the same rules.
    """

    model_config = ConfigDict(
        **PAYLOAD_CONFIG,
        json_schema_extra={
            "examples": [
                {
                    "application_id": "app_01HZX3Q8W6",
                    "application_revision": 1,
                    "outcome": "eligible",
                    "rule_set_id": "gaip-eligibility",
                    "rule_set_version": "2026.1",
                    "rule_set_sha256": (
                        "3a7bd3e2360a3d29eea436fcfb7e44c735d117c42d1c1835420b6b9942dd4f1b"
                    ),
                    "rule_set_effective_from": "2026-01-01",
                    "rule_results": [
                        RULE_RESULT_EXAMPLE,
                        {
                            "rule_id": "minimum_investment",
                            "passed": True,
                            "explanation": "The investment commitment meets the minimum.",
                        },
                    ],
                    "missing_fields": [],
                    "assessed_at": "2026-11-26T10:35:04Z",
                }
            ]
        },
    )

    application_id: Identifier = Field(
        description="The application id; equal to the envelope subject.",
        examples=["app_01HZX3Q8W6"],
    )
    application_revision: int = Field(
        ge=1,
        description="The revision of the application content that was assessed.",
        examples=[1, 2],
    )
    outcome: EligibilityOutcome = Field(
        description="Eligible, ineligible, or needs more information (see `missing_fields`).",
        examples=["eligible", "ineligible", "needs_information"],
    )
    rule_set_id: Identifier = Field(
        description="The rule set evaluated.", examples=["gaip-eligibility"]
    )
    rule_set_version: RuleSetVersion = Field(
        description="Version of the rule set evaluated.", examples=["2026.1"]
    )
    rule_set_sha256: Sha256Hex = Field(
        description="SHA-256 of the rule-set file's bytes, proving which rules were applied.",
        examples=["3a7bd3e2360a3d29eea436fcfb7e44c735d117c42d1c1835420b6b9942dd4f1b"],
    )
    rule_set_effective_from: date = Field(
        description="The date from which the rule set applies to submissions.",
        examples=["2026-01-01"],
    )
    rule_results: list[RuleResult] = Field(
        min_length=1,
        max_length=500,
        description="Every rule's outcome, in rule-set order.",
        examples=[[RULE_RESULT_EXAMPLE]],
    )
    missing_fields: list[FieldPath] = Field(
        default_factory=list,
        max_length=200,
        description=(
            "Content fields the rules needed but the application lacks. Never empty when the "
            "outcome is `needs_information`, always empty when it is `eligible`."
        ),
        examples=[[], ["commitments.data_protection_attestation"]],
    )
    assessed_at: UtcDatetime = Field(
        description="When the assessment was made, in UTC.", examples=["2026-11-26T10:35:04Z"]
    )

    @model_validator(mode="after")
    def _missing_fields_match_outcome(self) -> Self:
        if self.outcome is EligibilityOutcome.NEEDS_INFORMATION and not self.missing_fields:
            raise ValueError("a needs_information outcome must name the missing fields")
        if self.outcome is EligibilityOutcome.ELIGIBLE and self.missing_fields:
            raise ValueError("an eligible outcome cannot have missing fields")
        return self
