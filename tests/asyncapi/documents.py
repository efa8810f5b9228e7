"""The AsyncAPI documents every process serves, fetched the way a reader gets them."""

from __future__ import annotations

import importlib
import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from services.cli.settings import SERVICE_NAMES, SIMULATORS, WEB_SERVICES, service_module

REPO_ROOT = Path(__file__).resolve().parents[2]
#: The npm project holding the official AsyncAPI parser (installed by ``make install``).
PARSER_DIR = REPO_ROOT / "tools" / "asyncapi"


async def served_documents(var_dir: Path) -> dict[str, dict[str, Any]]:
    """Process name -> the document its app serves at ``/asyncapi.json``.

    The apps are built but not started: the documents need no broker or database.
    """
    documents: dict[str, dict[str, Any]] = {}
    for name in SERVICE_NAMES:
        if name in SIMULATORS | WEB_SERVICES:  # HTTP only: no messaging to document
            continue
        module = importlib.import_module(service_module(name))
        app = module.create_app(module.Settings(var_dir=var_dir / name))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=f"http://{name}") as client:
            response = await client.get("/asyncapi.json")
        assert response.status_code == 200, (name, response.text)
        documents[name] = response.json()
    return documents


#: What the ``official_parser`` fixture gives: :func:`parse_with_official_parser`.
OfficialParser = Callable[[list[Path]], list[dict[str, Any]]]


def parse_with_official_parser(files: list[Path]) -> list[dict[str, Any]]:
    """Run ``@asyncapi/parser`` over ``files``; one result per file (valid, errors, warnings)."""
    node = shutil.which("node")
    assert node is not None, "Node.js is needed for the AsyncAPI parser"
    assert (PARSER_DIR / "node_modules" / "@asyncapi" / "parser").is_dir(), (
        f"the AsyncAPI parser is not installed in {PARSER_DIR}: run `make install`"
    )
    result = subprocess.run(
        [node, str(PARSER_DIR / "validate.mjs"), *map(str, files)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=PARSER_DIR,
    )
    results = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    assert len(results) == len(files), result.stdout + result.stderr
    return results
