"""Every API fuzzed from its own OpenAPI document, with a token of every role and none.

Schemathesis generates requests for each operation of each served service, valid ones and
invalid ones (wrong types, missing fields, out-of-range values, odd characters), and sends them
to the real service on PostgreSQL. Every response must:

- not be a server error: no 500 or 502, and a 503 only where the operation documents it (the
  broker and Temporal are deliberately unreachable here, which the services report as 503);
- have a documented status code and media type;
- match the documented schema for that status, body and headers.

The example count per operation and mode is bounded (:data:`EXAMPLES`) so the whole run stays
short; each failure is shrunk to its smallest example and every one is reported at once. For a
deeper run by hand, ``INCENTIVES_FUZZ_EXAMPLES=200 pytest tests/fuzz/test_fuzz.py``.
"""

from __future__ import annotations

import os
from typing import Any

import hypothesis
import hypothesis.errors
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from services.kit.access import endpoint
from tests.fuzz.platform import SERVED, ServedPlatform
from tests.fuzz.tokens import ROLE_TOKENS

#: Examples per operation and generation mode, each with a caller drawn by :func:`_roles`.
EXAMPLES = int(os.environ.get("INCENTIVES_FUZZ_EXAMPLES", "8"))

CHECKS = [
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


def _server_error(case: schemathesis.Case, response: requests.Response) -> str | None:
    status = response.status_code
    if status < 500:
        return None
    if status == 503 and "503" in case.operation.definition.raw.get("responses", {}):
        return None  # a dependency this setup keeps unreachable, as documented
    return f"{status} {response.text[:500]}"


def _has_inputs(operation: Any) -> bool:
    """Whether there is anything to make invalid (parameters or a body)."""
    definition = operation.definition.raw
    return bool(definition.get("parameters") or definition.get("requestBody"))


def _roles(service: str, operation: Any) -> list[str]:
    """Callers to draw from: every role and none, the roles the matrix grants three times over.

    Granted callers get past the role check, so most examples reach the route's logic; the
    others check that refusals are documented too.
    """
    entry = endpoint(service, operation.method, operation.path)
    assert entry is not None, f"{service} {operation.label} is not in the authorization matrix"
    granted = sorted(str(role) for role in entry.grants) or ["none"]
    return granted * 3 + sorted(ROLE_TOKENS)


def _fuzz(
    operation: Any, mode: GenerationMode, roles: list[str], base_url: str, session: requests.Session
) -> None:
    @hypothesis.given(
        case=operation.as_strategy(generation_mode=mode),
        role=st.sampled_from(roles),
    )
    @hypothesis.settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
    )
    def run(case: schemathesis.Case, role: str) -> None:
        headers = ROLE_TOKENS[role]()
        response = case.call(base_url=base_url, headers=headers, session=session, timeout=30)
        error = _server_error(case, response)
        assert error is None, f"server error as {role}: {error}\n{case.as_curl_command(headers)}"
        case.validate_response(response, checks=CHECKS, headers=headers)

    run()


@pytest.mark.parametrize("name", SERVED)
def test_every_operation_answers_as_documented(served: ServedPlatform, name: str) -> None:
    schema = schemathesis.openapi.from_dict(served.apps[name].openapi())
    failures: list[str] = []
    fuzzed = 0
    with requests.Session() as session:
        for result in schema.get_all_operations():
            operation = result.ok()
            modes = [GenerationMode.POSITIVE]
            if _has_inputs(operation):
                modes.append(GenerationMode.NEGATIVE)
            for mode in modes:
                try:
                    _fuzz(operation, mode, _roles(name, operation), served.urls[name], session)
                except hypothesis.errors.Unsatisfiable:
                    # Every input is valid (an unconstrained path parameter): none to make bad.
                    assert mode is GenerationMode.NEGATIVE
                except Exception as exc:  # every failure, reported together below
                    failures.append(f"{operation.label} ({mode.value}): {exc}")
                fuzzed += 1
    assert fuzzed > 0
    if failures:
        pytest.fail(f"{len(failures)} failures:\n\n" + "\n\n".join(failures), pytrace=False)
