"""Read the deployment files the way Docker would, without a Docker engine.

Shared by the tests in this folder: YAML loading (with merge keys), the Compose variable syntax,
the Compose override-merge rules the cluster file relies on, short port syntax, the Dockerfile
instruction grammar and ``.dockerignore`` matching. Each helper implements only the subset of the
real tool's behaviour that our files use, and says so.
"""

from __future__ import annotations

import copy
import fnmatch
import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
CLUSTER_FILE = REPO / "deploy" / "kafka" / "compose.kafka-cluster.yml"
DOCKERFILE = REPO / "deploy" / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
INIT_SCRIPT = REPO / "deploy" / "postgres" / "initdb" / "10-create-databases.sh"
ENV_EXAMPLE = REPO / "deploy" / "env.example"

#: Services and their default ports, as fixed by the team plan (issue 2, section 4).
SERVICE_PORTS: dict[str, int] = {
    "portal": 8000,
    "applications": 8001,
    "review": 8002,
    "audit": 8003,
    "zones": 8004,
    "disbursement": 8005,
    "eligibility": 8006,
    "worker": 8007,
}
#: Processes whose port only serves /health, so it is published on loopback only.
HEALTH_ONLY = frozenset({"eligibility", "worker"})
#: Processes that own a database: every service, and the worker (its bridge's processed-message
#: marks and outbox must survive restarts, so they cannot live in the container).
#: The portal owns no data: it calls the services' APIs and keeps sessions in a signed cookie.
WITH_DATABASE = frozenset(SERVICE_PORTS) - {"portal"}


def load_yaml(path: Path) -> Any:
    """Parse a YAML file into plain Python data, resolving anchors and ``<<`` merge keys."""
    yaml = YAML(typ="safe", pure=True)
    with path.open(encoding="utf-8") as handle:
        return yaml.load(handle)


def check_compose_schema(*files: Path) -> subprocess.CompletedProcess[str]:
    """Validate files against the Compose Specification bundled in check-jsonschema (offline)."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "check_jsonschema",
            "--builtin-schema",
            "vendor.compose-spec",
            *map(str, files),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def write_json(data: Any, path: Path) -> Path:
    """Dump ``data`` as JSON (check-jsonschema validates JSON instances as well as YAML)."""
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------------
# Compose variables: ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?err}, ${VAR?err}, $$
# ---------------------------------------------------------------------------------------------

VARIABLE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


@dataclass(frozen=True)
class VariableRef:
    """One ``${...}`` reference found in a Compose value."""

    name: str
    op: str | None  # None, ":-", "-", ":?", "?"
    arg: str


def variable_refs(value: str) -> list[VariableRef]:
    """Every ``${...}`` reference in ``value`` (``$$`` escapes are not references)."""
    unescaped = value.replace("$$", "")
    return [
        VariableRef(m.group("name"), m.group("op"), m.group("arg") or "")
        for m in VARIABLE.finditer(unescaped)
    ]


def interpolate(value: str, env: dict[str, str]) -> str:
    """Substitute variables the way Compose does; a missing required variable raises KeyError."""

    def substitute(match: re.Match[str]) -> str:
        name, op, arg = match.group("name"), match.group("op"), match.group("arg") or ""
        present = name in env
        if op in (":-", ":?"):
            present = present and env[name] != ""
        if present:
            return env[name]
        if op in (":-", "-"):
            return arg
        if op in (":?", "?"):
            raise KeyError(f"required variable {name} is missing a value: {arg}")
        return ""

    placeholder = "\x00"
    return VARIABLE.sub(substitute, value.replace("$$", placeholder)).replace(placeholder, "$")


def walk_strings(node: Any) -> list[str]:
    """Every string scalar anywhere in a parsed YAML document."""
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for key, value in node.items() for s in walk_strings(key) + walk_strings(value)]
    if isinstance(node, list):
        return [s for item in node for s in walk_strings(item)]
    return []


# ---------------------------------------------------------------------------------------------
# Services
# ---------------------------------------------------------------------------------------------


def environment(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment as a mapping (Compose accepts a mapping or a KEY=VALUE list)."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(key): "" if value is None else str(value) for key, value in env.items()}


def depends_on(service: dict[str, Any]) -> dict[str, str]:
    """``target -> condition``; the short list form means ``service_started``."""
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return dict.fromkeys(deps, "service_started")
    return {name: (spec or {}).get("condition", "service_started") for name, spec in deps.items()}


@dataclass(frozen=True)
class PortMapping:
    """One published port in the short ``[HOST_IP:]PUBLISHED:TARGET[/PROTO]`` syntax."""

    host_ip: str
    published: int
    target: int


def ports(service: dict[str, Any]) -> list[PortMapping]:
    """Parse a service's ``ports``; only the single-port short syntax is used in our files."""
    parsed = []
    for entry in service.get("ports") or []:
        spec = str(entry).split("/", 1)[0]
        parts = spec.split(":")
        if len(parts) == 3:
            parsed.append(PortMapping(parts[0], int(parts[1]), int(parts[2])))
        elif len(parts) == 2:
            parsed.append(PortMapping("0.0.0.0", int(parts[0]), int(parts[1])))
        else:
            raise ValueError(f"unsupported port syntax {entry!r}")
    return parsed


def volume_target(entry: str | dict[str, Any]) -> str:
    """The container path of a volume entry (short ``SOURCE:TARGET[:MODE]`` or long syntax)."""
    if isinstance(entry, dict):
        return str(entry["target"])
    parts = entry.split(":")
    return parts[1] if len(parts) >= 2 else parts[0]


def volume_source(entry: str | dict[str, Any]) -> str:
    """The source (named volume or host path) of a volume entry."""
    if isinstance(entry, dict):
        return str(entry.get("source", ""))
    return entry.split(":")[0]


# ---------------------------------------------------------------------------------------------
# Kafka (apache/kafka image settings)
# ---------------------------------------------------------------------------------------------


def listener_map(value: str) -> dict[str, str]:
    """``NAME://host:port,...`` -> ``{NAME: host:port}``."""
    return dict(item.split("://", 1) for item in value.split(","))


def check_kraft_node(env: dict[str, str], hostname: str) -> None:
    """Assert one KRaft broker+controller's listener settings are consistent."""
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", env["CLUSTER_ID"]), "16-byte base64url id"
    listeners = listener_map(env["KAFKA_LISTENERS"])
    advertised = listener_map(env["KAFKA_ADVERTISED_LISTENERS"])
    protocol_map = env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"]
    protocols = dict(item.split(":") for item in protocol_map.split(","))
    controller = env["KAFKA_CONTROLLER_LISTENER_NAMES"]
    assert set(listeners) <= set(protocols)
    assert set(advertised) <= set(listeners)
    assert controller in listeners
    assert controller not in advertised
    assert env["KAFKA_INTER_BROKER_LISTENER_NAME"] in advertised
    assert advertised["INTERNAL"] == f"{hostname}:{listeners['INTERNAL'].rsplit(':', 1)[1]}"
    voters = dict(v.split("@") for v in env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(","))
    controller_port = listeners[controller].rsplit(":", 1)[1]
    assert voters[env["KAFKA_NODE_ID"]] == f"{hostname}:{controller_port}"
    assert env["KAFKA_LOG_DIRS"] == "/var/lib/kafka/data"
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"


# ---------------------------------------------------------------------------------------------
# Compose override merge (docker compose -f base -f override), for the keys our files use
# ---------------------------------------------------------------------------------------------

#: Mapping-valued service keys that Compose merges key by key.
_MAPPING_KEYS = {"environment", "depends_on", "labels", "healthcheck", "logging", "build"}
#: Sequence-valued keys that Compose merges as a de-duplicated union.
_UNION_KEYS = {"ports", "tmpfs", "cap_drop", "cap_add", "security_opt", "expose"}


def merge_service(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Merge one service definition the way the Compose merge rules do.

    Mappings merge by key, ``volumes`` merge by container path, ``ports`` and the like become a
    union, and everything else (``command``, ``image``, scalars...) is replaced.
    """
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if key not in merged:
            merged[key] = copy.deepcopy(value)
        elif key == "environment":
            merged[key] = {**environment(base), **environment(override)}
        elif key == "depends_on":
            merged[key] = {
                name: {"condition": cond}
                for name, cond in {**depends_on(base), **depends_on(override)}.items()
            }
        elif key in _MAPPING_KEYS and isinstance(value, dict):
            merged[key] = {**merged[key], **copy.deepcopy(value)}
        elif key == "volumes":
            by_target = {volume_target(v): v for v in merged[key]}
            by_target.update({volume_target(v): v for v in value})
            merged[key] = list(by_target.values())
        elif key in _UNION_KEYS:
            merged[key] = list(dict.fromkeys([*merged[key], *value]))
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def merge_compose(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Merge a whole override file onto a base file."""
    merged = copy.deepcopy(base)
    for section, content in override.items():
        if section.startswith("x-"):
            continue  # extension fields are file-local templates, not part of the model
        if section == "services":
            services = merged.setdefault("services", {})
            for name, spec in content.items():
                services[name] = merge_service(services.get(name, {}), spec)
        elif isinstance(content, dict):
            merged[section] = {**(merged.get(section) or {}), **content}
        else:
            merged[section] = content
    return {k: v for k, v in merged.items() if not k.startswith("x-")}


# ---------------------------------------------------------------------------------------------
# Dockerfile
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction after line continuations are joined."""

    keyword: str
    args: str
    stage: int  # index of the FROM it belongs to (-1 before the first FROM)


def parse_dockerfile(path: Path) -> list[Instruction]:
    """Split a Dockerfile into instructions (backslash continuations, comments, directives)."""
    instructions: list[Instruction] = []
    stage = -1
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue  # comments and parser directives (# syntax=...) are not instructions
        if pending and line.startswith("#"):
            continue  # comment lines inside a continued instruction are dropped, as by BuildKit
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        keyword, _, args = full.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        instructions.append(Instruction(keyword, args.strip(), stage))
    if pending:
        raise ValueError("Dockerfile ends inside a continued instruction")
    return instructions


def exec_form(args: str) -> list[str] | None:
    """The JSON (exec) form of CMD/ENTRYPOINT/RUN arguments, or None for the shell form."""
    try:
        value = json.loads(args)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, list) and all(isinstance(v, str) for v in value) else None


def key_values(args: str) -> dict[str, str]:
    """Parse ``ENV``/``ARG``/``LABEL`` arguments in the ``KEY=VALUE ...`` form (quotes allowed)."""
    pairs = re.findall(r'([A-Za-z_][A-Za-z0-9_.\-]*)=("(?:[^"\\]|\\.)*"|\S*)', args)
    return {key: value.strip('"') for key, value in pairs}


# ---------------------------------------------------------------------------------------------
# .dockerignore
# ---------------------------------------------------------------------------------------------


def dockerignore_excludes(patterns: list[str], path: str) -> bool:
    """Whether ``path`` (relative, ``/``-separated) is left out of the build context.

    Docker semantics for the patterns we use: the last matching line wins, ``!`` re-includes,
    ``**`` matches any number of directories, and a pattern that matches a directory also
    covers everything below it.
    """
    excluded = False
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for raw in patterns:
        negate = raw.startswith("!")
        pattern = raw[1:] if negate else raw
        pattern = pattern.strip().rstrip("/")
        if not pattern:
            continue
        if any(_glob_match(pattern, prefix) for prefix in prefixes):
            excluded = not negate
    return excluded


def _glob_match(pattern: str, path: str) -> bool:
    """Match one path against one pattern, with ``**`` spanning directories."""
    if pattern.startswith("**/"):
        tail = pattern[3:]
        segments = path.split("/")
        return any(_glob_match(tail, "/".join(segments[i:])) for i in range(len(segments)))
    if pattern.count("/") != path.count("/"):
        return False
    return all(
        fnmatch.fnmatchcase(seg, pat)
        for seg, pat in zip(path.split("/"), pattern.split("/"), strict=True)
    )


def read_dockerignore(path: Path = DOCKERIGNORE) -> list[str]:
    """The non-comment lines of a ``.dockerignore`` file."""
    return [
        line.strip()
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
