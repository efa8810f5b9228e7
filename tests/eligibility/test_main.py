"""The composition root loads the rule sets once and refuses to start on an invalid file."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import httpx
import pytest

from contracts.topics import get_topic
from services.cli.embedded import free_port
from services.eligibility.domain import RuleSetError
from services.eligibility.main import create_app
from services.eligibility.rulefiles import SHIPPED_RULES_DIR
from services.eligibility.settings import Settings

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_rules_dir_defaults_to_the_shipped_rule_sets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("INCENTIVES_ELIGIBILITY_RULES_DIR", raising=False)
    assert Settings().rules_dir == SHIPPED_RULES_DIR
    monkeypatch.setenv("INCENTIVES_ELIGIBILITY_RULES_DIR", "/etc/rules")
    assert Settings().rules_dir == Path("/etc/rules")


async def test_create_app_documents_rule_sets_and_channels(tmp_path: Path) -> None:
    app = create_app(Settings(var_dir=tmp_path))
    assert "gaip-eligibility 2026.1" in (app.description or "")
    assert "gaip-eligibility 2027.1" in (app.description or "")
    # No lifespan: documentation is served without a broker or database.
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://eligibility") as client:
        channels = (await client.get("/asyncapi.json")).json()["channels"]
    assert set(channels) == {"eligibility.events", "applications.events", "applications.events.dlq"}
    assert "sent.eligibility.assessed" in channels["eligibility.events"]["messages"]
    # Every type the consumed topic carries, not only those the assessor acts on.
    assert set(channels["applications.events"]["messages"]) == set(
        get_topic("applications.events").types
    )
    assert {"application.submitted", "application.amended"} < set(
        channels["applications.events"]["messages"]
    )


def test_create_app_refuses_invalid_rules(tmp_path: Path) -> None:
    (tmp_path / "broken.toml").write_text('[rule_set]\nid = "x"\n')
    with pytest.raises(RuleSetError, match=r"broken\.toml"):
        create_app(Settings(var_dir=tmp_path, rules_dir=tmp_path))


async def test_main_exits_2_with_one_clear_line_on_invalid_rules(tmp_path: Path) -> None:
    (tmp_path / "broken.toml").write_text('[rule_set]\nid = "x"\nversion = "1"\n')
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("INCENTIVES_")}
    env.update(
        INCENTIVES_VAR_DIR=str(tmp_path),
        INCENTIVES_ELIGIBILITY_PORT=str(port),
        INCENTIVES_ELIGIBILITY_RULES_DIR=str(tmp_path),
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from services.eligibility.main import main; main()",
        cwd=REPO_ROOT,
        env=env,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        # A deadline, not a timing target: on a loaded machine the imports alone took a minute.
        _, stderr = await asyncio.wait_for(process.communicate(), 300)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    output = stderr.decode()
    assert process.returncode == 2, output
    assert "invalid eligibility rule sets" in output
    assert "effective_from is missing" in output
    assert "Traceback" not in output
