"""The example application the README points firms at stays complete and valid."""

from __future__ import annotations

import json
from pathlib import Path

from contracts.v1.applications import CONTENT_EXAMPLE, ApplicationContent

EXAMPLE = Path(__file__).resolve().parents[2] / "services/applications/examples/application.json"


def test_the_shipped_example_is_a_complete_valid_application() -> None:
    body = json.loads(EXAMPLE.read_text())
    ApplicationContent.model_validate(body)
    assert body == CONTENT_EXAMPLE, "regenerate it from contracts.v1.applications.CONTENT_EXAMPLE"
