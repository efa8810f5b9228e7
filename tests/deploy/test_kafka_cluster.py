"""deploy/kafka/compose.kafka-cluster.yml turns the single broker into a replicated KRaft cluster.

The override is merged onto docker-compose.yml with the Compose merge rules (as
``docker compose -f docker-compose.yml -f deploy/kafka/compose.kafka-cluster.yml`` would), and
the merged model is checked both against the Compose schema and for replication safety.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.deploy.compose_model import (
    CLUSTER_FILE,
    COMPOSE_FILE,
    SERVICE_PORTS,
    check_compose_schema,
    check_kraft_node,
    depends_on,
    environment,
    listener_map,
    load_yaml,
    merge_compose,
    ports,
    volume_source,
    volume_target,
    write_json,
)

BROKERS = ("kafka", "kafka-2", "kafka-3")


@pytest.fixture(scope="module")
def merged() -> dict[str, Any]:
    """The base file with the cluster override applied."""
    return merge_compose(load_yaml(COMPOSE_FILE), load_yaml(CLUSTER_FILE))


def broker_env(merged: dict[str, Any], name: str) -> dict[str, str]:
    """One broker's environment in the merged model."""
    return environment(merged["services"][name])


def test_merged_model_matches_the_compose_specification(
    merged: dict[str, Any], tmp_path: Path
) -> None:
    """What Compose would run after the merge is itself a valid Compose model."""
    result = check_compose_schema(write_json(merged, tmp_path / "merged.json"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_three_kraft_nodes_form_one_quorum(merged: dict[str, Any]) -> None:
    """Three broker+controller nodes, distinct ids, one cluster id, the same three voters."""
    services = merged["services"]
    envs = [broker_env(merged, name) for name in BROKERS]
    for name, env in zip(BROKERS, envs, strict=True):
        assert services[name]["image"] == services["kafka"]["image"]
        check_kraft_node(env, services[name].get("hostname", name))
        assert services[name]["healthcheck"]["test"] == services["kafka"]["healthcheck"]["test"]
    assert sorted(env["KAFKA_NODE_ID"] for env in envs) == ["1", "2", "3"]
    assert len({env["CLUSTER_ID"] for env in envs}) == 1
    voters = {env["KAFKA_CONTROLLER_QUORUM_VOTERS"] for env in envs}
    assert len(voters) == 1
    assert len(voters.pop().split(",")) == len(BROKERS)


def test_replication_survives_one_node_down(merged: dict[str, Any]) -> None:
    """RF 3 with min.insync.replicas 2 everywhere, internal topics included; no unclean election.

    With acks=all a write needs two in-sync replicas, so one node may fail without losing an
    acknowledged message or blocking producers.
    """
    for name in BROKERS:
        env = broker_env(merged, name)
        assert env["KAFKA_DEFAULT_REPLICATION_FACTOR"] == "3", name
        assert env["KAFKA_MIN_INSYNC_REPLICAS"] == "2", name
        assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "3", name
        assert env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"] == "3", name
        assert env["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"] == "2", name
        assert env["KAFKA_UNCLEAN_LEADER_ELECTION_ENABLE"] == "false", name


def test_each_node_has_its_own_storage_and_host_port(merged: dict[str, Any]) -> None:
    """Separate data volumes (not the single-node one) and distinct advertised host ports."""
    services = merged["services"]
    data_volumes = []
    external = []
    for name in BROKERS:
        env = broker_env(merged, name)
        mounts = {volume_target(v): volume_source(v) for v in services[name]["volumes"]}
        data_volumes.append(mounts[env["KAFKA_LOG_DIRS"]])
        host, port = listener_map(env["KAFKA_ADVERTISED_LISTENERS"])["EXTERNAL"].rsplit(":", 1)
        assert host == "localhost", name
        published = {m.published: m for m in ports(services[name])}
        assert published[int(port)].host_ip == "127.0.0.1", name
        external.append(int(port))
    assert len(set(data_volumes)) == len(BROKERS)
    assert "kafka-data" not in data_volumes, "the single-node log cannot join a 3-voter quorum"
    assert set(data_volumes) <= set(merged["volumes"])
    assert len(set(external)) == len(BROKERS)


def test_clients_bootstrap_from_every_broker(merged: dict[str, Any]) -> None:
    """Each service, the worker and the topic job list all three internal listeners."""
    internal = {
        listener_map(broker_env(merged, name)["KAFKA_ADVERTISED_LISTENERS"])["INTERNAL"]
        for name in BROKERS
    }
    for name in [*(n for n in SERVICE_PORTS if n != "portal"), "topics"]:
        bootstrap = environment(merged["services"][name])["INCENTIVES_KAFKA_BOOTSTRAP"]
        assert set(bootstrap.split(",")) == internal, name


def test_topics_are_created_replicated_once_all_brokers_are_up(merged: dict[str, Any]) -> None:
    """The topic job asks for the cluster's replication factor and waits for every broker."""
    topics = merged["services"]["topics"]
    command = topics["command"]
    assert command[:2] == ["topics", "create"]
    factor = command[command.index("--replication-factor") + 1]
    assert factor == broker_env(merged, "kafka")["KAFKA_DEFAULT_REPLICATION_FACTOR"]
    assert depends_on(topics) == dict.fromkeys(BROKERS, "service_healthy")


def test_override_changes_nothing_but_kafka_settings(merged: dict[str, Any]) -> None:
    """Apart from Kafka, the merged stack equals the base stack (the override is Kafka-only)."""
    base = load_yaml(COMPOSE_FILE)["services"]
    for name, spec in base.items():
        if name in BROKERS:
            continue
        after = merged["services"][name]
        for key in spec:
            if key in ("environment", "command", "depends_on"):
                continue
            assert after[key] == spec[key], f"{name}.{key}"
        changed = {k for k, v in environment(after).items() if environment(spec).get(k) != v}
        assert changed <= {"INCENTIVES_KAFKA_BOOTSTRAP"}, name
