"""deploy/Dockerfile builds the one image every container runs, reproducibly and without secrets.

The instructions are parsed (continuations, comments, stages) and checked against the project
files: what the build copies exists and is not ignored, the pins agree with the project's, and
the entrypoint matches the commands docker-compose.yml passes.
"""

from __future__ import annotations

import re
import tomllib
from typing import Any

import pytest

from tests.deploy.compose_model import (
    COMPOSE_FILE,
    DOCKERFILE,
    REPO,
    SERVICE_PORTS,
    Instruction,
    dockerignore_excludes,
    exec_form,
    key_values,
    load_yaml,
    parse_dockerfile,
    read_dockerignore,
)

SECRET_NAME = re.compile(r"SECRET|PASSWORD|PWD|TOKEN|API_KEY|PRIVATE_KEY", re.IGNORECASE)


@pytest.fixture(scope="module")
def instructions() -> list[Instruction]:
    """Every instruction of deploy/Dockerfile."""
    return parse_dockerfile(DOCKERFILE)


@pytest.fixture(scope="module")
def final_stage(instructions: list[Instruction]) -> list[Instruction]:
    """The instructions of the last stage: the image that actually runs."""
    last = max(i.stage for i in instructions)
    return [i for i in instructions if i.stage == last]


@pytest.fixture(scope="module")
def pyproject() -> dict[str, Any]:
    """The project's pyproject.toml."""
    with (REPO / "pyproject.toml").open("rb") as handle:
        return tomllib.load(handle)


def arg_defaults(instructions: list[Instruction]) -> dict[str, str]:
    """Default values of every ``ARG`` (global and per stage)."""
    defaults: dict[str, str] = {}
    for instruction in instructions:
        if instruction.keyword == "ARG":
            defaults.update(key_values(instruction.args))
    return defaults


def resolve(text: str, args: dict[str, str]) -> str:
    """Expand ``${NAME}`` / ``$NAME`` build arguments in an instruction."""
    return re.sub(
        r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m.group(1) or m.group(2), m.group(0)), text
    )


def test_parser_understands_the_file(instructions: list[Instruction]) -> None:
    """Sanity check of the parser itself: known instructions only, in at least two stages."""
    known = {"ARG", "FROM", "ENV", "RUN", "WORKDIR", "COPY", "LABEL", "USER", "EXPOSE"}
    known |= {"ENTRYPOINT", "CMD", "HEALTHCHECK", "STOPSIGNAL", "SHELL", "VOLUME"}
    assert {i.keyword for i in instructions} <= known
    assert instructions[0].keyword in ("ARG", "FROM")


def test_multi_stage_build_on_the_projects_python(
    instructions: list[Instruction], pyproject: dict[str, Any]
) -> None:
    """Build and runtime stages both start from a pinned python:3.11 slim image; the portal's
    front-end packages are installed in a stage of their own on a pinned Node.js image."""
    args = arg_defaults(instructions)
    stages = [i.args.split() for i in instructions if i.keyword == "FROM"]
    bases = {stage[-1]: resolve(stage[0], args) for stage in stages}
    assert len(bases) >= 2, "the runtime stage must not carry the build tooling"
    minor = re.search(r"3\.(\d+)", pyproject["project"]["requires-python"])
    assert minor
    assert re.fullmatch(r"node:\d+\.\d+\.\d+-bookworm-slim", bases.pop("assets")), "assets"
    for base in bases.values():
        assert re.fullmatch(rf"python:3\.{minor.group(1)}\.\d+-slim(-\w+)?", base), base


def test_dependencies_come_from_the_lockfile_without_dev_tools(
    instructions: list[Instruction],
) -> None:
    """uv is pinned; dependencies install with ``uv sync --frozen --no-dev``, the project as a
    regular wheel so the runtime stage needs no source tree."""
    args = arg_defaults(instructions)
    runs = [resolve(i.args, args) for i in instructions if i.keyword == "RUN"]
    installs = [r for r in runs if "pip install" in r and "uv" in r]
    assert installs
    assert all(re.search(r"\buv==\d+\.\d+\.\d+", r) for r in installs), installs
    syncs = [r for r in runs if "uv sync" in r]
    assert syncs
    for sync in syncs:
        assert "--frozen" in sync
        assert "--no-dev" in sync
    assert "--no-install-project" in syncs[0], "dependency layer first, for caching"
    assert "--no-editable" in syncs[-1]


def test_uv_version_matches_the_one_that_wrote_the_lockfile(
    instructions: list[Instruction],
) -> None:
    """The image's uv is the Makefile's, so it reads the lockfile format the project commits."""
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    pinned = re.search(r"^UV_VERSION\s*:?=\s*(\S+)", makefile, re.MULTILINE)
    assert pinned, "Makefile no longer pins UV_VERSION; update this test and the Dockerfile"
    assert arg_defaults(instructions)["UV_VERSION"] == pinned.group(1)


def test_build_copies_only_existing_project_files_that_the_context_includes(
    instructions: list[Instruction],
) -> None:
    """Every COPY source exists and survives .dockerignore; secrets and local state do not."""
    patterns = read_dockerignore()
    for instruction in instructions:
        if instruction.keyword != "COPY" or "--from=" in instruction.args:
            continue
        *sources, _dest = [a for a in instruction.args.split() if not a.startswith("--")]
        for source in sources:
            assert (REPO / source).exists(), source
            assert not dockerignore_excludes(patterns, source), f"{source} is ignored"
    for package in ("contracts", "services", "workflows"):
        assert not dockerignore_excludes(patterns, f"{package}/__init__.py"), package
    for private in (".env", "var/applications.db", ".venv/bin/python", ".git/config"):
        assert dockerignore_excludes(patterns, private), private
    assert dockerignore_excludes(patterns, "services/kit/__pycache__/x.cpython-311.pyc")


def test_runtime_image_runs_unprivileged_in_production_mode(
    final_stage: list[Instruction], instructions: list[Instruction]
) -> None:
    """The final stage switches to a non-root user and defaults to production mode."""
    args = arg_defaults(instructions)
    users = [resolve(i.args, args) for i in final_stage if i.keyword == "USER"]
    assert users, "runtime stage must set USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    if user.isdigit():
        assert int(user) >= 1000
    env: dict[str, str] = {}
    for instruction in final_stage:
        if instruction.keyword == "ENV":
            env.update(key_values(instruction.args))
    assert env["INCENTIVES_DEV_MODE"] == "false"
    assert "/opt/incentives/venv/bin" in env["PATH"]


def test_no_secret_is_baked_into_the_image(instructions: list[Instruction]) -> None:
    """No ENV/ARG carries a secret-looking name and nothing copies a .env file."""
    for instruction in instructions:
        if instruction.keyword in ("ENV", "ARG"):
            for key in key_values(instruction.args):
                assert not SECRET_NAME.search(key), key
        if instruction.keyword == "COPY":
            assert ".env" not in instruction.args.split()


def test_entrypoint_is_the_cli_that_compose_commands_address(
    final_stage: list[Instruction], pyproject: dict[str, Any]
) -> None:
    """ENTRYPOINT ["incentives"] is the project's console script; Compose commands are its
    subcommands, so each container effectively runs ``incentives serve <name>``."""
    entrypoints = [exec_form(i.args) for i in final_stage if i.keyword == "ENTRYPOINT"]
    assert entrypoints == [["incentives"]], "exec form, so signals reach the CLI"
    assert "incentives" in pyproject["project"]["scripts"]
    cmd = [exec_form(i.args) for i in final_stage if i.keyword == "CMD"]
    assert cmd
    assert cmd[-1] is not None, "CMD must be in exec form"

    services = load_yaml(COMPOSE_FILE)["services"]
    for name in SERVICE_PORTS:
        assert services[name]["command"] == ["serve", name]
        assert "entrypoint" not in services[name], name


def test_image_exposes_every_service_port(final_stage: list[Instruction]) -> None:
    """EXPOSE documents the ports the services listen on."""
    exposed = {
        int(port.split("/")[0])
        for i in final_stage
        if i.keyword == "EXPOSE"
        for port in i.args.split()
    }
    assert exposed == set(SERVICE_PORTS.values())
