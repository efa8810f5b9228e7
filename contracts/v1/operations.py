"""Operations events: what operators did to the message flow itself (redrives)."""

from __future__ import annotations

import uuid

from pydantic import BaseModel, ConfigDict, Field

from contracts.headers import DeadLetterReason
from contracts.v1.common import PAYLOAD_CONFIG, Identifier, LongText

#: The dead letter's id, ``<dlq topic>:<partition>:<offset>``.
DEAD_LETTER_ID_PATTERN = r"^[A-Za-z0-9._-]+\.dlq:[0-9]+:[0-9]+$"


class DeadLetterRedriven(BaseModel):
    """Event ``dead_letter.redriven``: an operator sent a dead letter back to its topic.

    The record went back byte for byte, with its key and its original headers, so it keeps its
    original ``event_id``; a consumer that had processed it in the meantime drops it.
    """

    model_config = ConfigDict(
        **PAYLOAD_CONFIG,
        json_schema_extra={
            "examples": [
                {
                    "application_id": "app_01HZX3Q8W6",
                    "dead_letter_id": "applications.events.dlq:3:17",
                    "source_topic": "applications.events",
                    "original_event_id": "0b6f3c3e-6d0e-4a5c-9a55-3c1d7c3f9b21",
                    "original_type": "application.submitted",
                    "dead_letter_reason": "business_refusal",
                    "consumer": "eligibility",
                    "operator": "ops.mensah",
                    "note": "rule set 2026-12 deployed; the refusal is fixed",
                }
            ]
        },
    )

    application_id: Identifier = Field(
        description=(
            "The application the redriven message is about (its record key); the dead letter's"
            " id when the record had no key. It is the envelope `subject`."
        ),
        examples=["app_01HZX3Q8W6"],
    )
    dead_letter_id: str = Field(
        pattern=DEAD_LETTER_ID_PATTERN,
        max_length=300,
        description="The dead letter that was redriven: `<dlq topic>:<partition>:<offset>`.",
        examples=["applications.events.dlq:3:17"],
    )
    source_topic: str = Field(
        min_length=1,
        max_length=249,
        description="The topic the record was published to again (its original topic).",
        examples=["applications.events"],
    )
    original_event_id: uuid.UUID | None = Field(
        default=None,
        description="The redriven message's `event_id`; null when its bytes hold no envelope.",
        examples=["0b6f3c3e-6d0e-4a5c-9a55-3c1d7c3f9b21", None],
    )
    original_type: str | None = Field(
        default=None,
        max_length=200,
        description="The redriven message's `type`, when its headers name one.",
        examples=["application.submitted", None],
    )
    dead_letter_reason: DeadLetterReason = Field(
        description="Why the consumer had dead-lettered it (`dlq.reason`).",
        examples=["business_refusal"],
    )
    consumer: str = Field(
        min_length=1,
        max_length=200,
        description="The consumer that had given up on it (`dlq.consumer`).",
        examples=["eligibility"],
    )
    operator: str = Field(
        min_length=1,
        max_length=200,
        description="Who redrove it; the envelope's `actor` names the same operator.",
        examples=["ops.mensah"],
    )
    note: LongText | None = Field(
        default=None,
        description="The operator's reason for the redrive, as given.",
        examples=["rule set 2026-12 deployed; the refusal is fixed", None],
    )
