"""The observability part of the production-like stack: Prometheus, Grafana, the collector, Jaeger.

No Docker engine is needed. The Prometheus configuration and its alert rules are checked with
``promtool`` (from Debian's prometheus package, which ``make install`` extracts into
``.tools/``); the dashboard JSON is checked against the metrics the services really declare
(their registries, built without starting anything); the wiring of the Compose file is
asserted: every process is scraped, every process exports its spans to the collector, the
collector forwards them to Jaeger, Grafana is provisioned with both.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.deploy.compose_model import (
    COMPOSE_FILE,
    REPO,
    SERVICE_PORTS,
    environment,
    load_yaml,
    ports,
    volume_source,
    volume_target,
)

DEPLOY = REPO / "deploy"
PROMETHEUS_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
DASHBOARDS = DEPLOY / "grafana" / "dashboards"
DATASOURCES = DEPLOY / "grafana" / "provisioning" / "datasources" / "datasources.yml"
DASHBOARD_PROVIDERS = DEPLOY / "grafana" / "provisioning" / "dashboards" / "dashboards.yml"
COLLECTOR_CONFIG = DEPLOY / "otel-collector" / "config.yaml"
PROMTOOL = REPO / ".tools" / "prometheus" / "usr" / "bin" / "promtool"

#: Metric names (families) the Temporal SDK's runtime serves; the worker appends them.
TEMPORAL_SDK_METRICS = {
    "temporal_workflow_task_schedule_to_start_latency",
    "temporal_workflow_task_execution_latency",
    "temporal_activity_execution_latency",
    "temporal_activity_schedule_to_start_latency",
    "temporal_workflow_completed",
    "temporal_workflow_failed",
    "temporal_num_pollers",
}
#: What issue "Operators see it" asks the dashboard to show, as the families that carry it.
REQUIRED_ON_DASHBOARD = {
    "http_requests",  # rate and status codes per route
    "http_request_duration_seconds",  # latency histogram
    "incentives_consumer_records",  # consumed, by outcome
    "incentives_consumer_lag",
    "incentives_outbox_backlog",
    "incentives_outbox_relay_latency_seconds",
    "incentives_dlq_records",
    "incentives_workflows_started",
    "incentives_workflows_completed",
    "incentives_workflows_failed",
    "incentives_review_decisions",
    "incentives_sla_reminders",
    "incentives_sla_escalations",
    "incentives_zone_units",
    "incentives_budget_amount",
    "incentives_payouts",
    "incentives_audit_log_leaves",
    "incentives_audit_checkpoint_age_seconds",
}
_METRIC = re.compile(r"\b((?:incentives|http|faststream|temporal)_[a-z0-9_]+)\b")
_SUFFIXES = ("_bucket", "_count", "_sum", "_total", "_created")


def family(name: str) -> str:
    """The metric family a sample name belongs to (``x_total`` and ``x_bucket`` are ``x``)."""
    for suffix in _SUFFIXES:
        if name.endswith(suffix):
            return name.removesuffix(suffix)
    return name


@pytest.fixture(scope="module")
def services() -> dict[str, dict[str, Any]]:
    data = load_yaml(COMPOSE_FILE)
    return data["services"]


@pytest.fixture(scope="module")
def declared_metrics(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """Every family the services' and the worker's registries declare (nothing is started)."""
    from services.applications.main import create_app as applications
    from services.applications.settings import Settings as ApplicationsSettings
    from services.audit.main import create_app as audit
    from services.audit.settings import Settings as AuditSettings
    from services.disbursement.main import create_app as disbursement
    from services.disbursement.settings import Settings as DisbursementSettings
    from services.zones.main import create_app as zones
    from services.zones.settings import Settings as ZonesSettings
    from tests.inprocess import in_process_settings
    from workflows import telemetry
    from workflows.settings import Settings as WorkerSettings
    from workflows.worker import create_app as worker

    names: set[str] = set()
    for create, settings_class in (
        (applications, ApplicationsSettings),
        (audit, AuditSettings),
        (disbursement, DisbursementSettings),
        (zones, ZonesSettings),
        (worker, WorkerSettings),
    ):
        app = create(in_process_settings(settings_class, tmp_path_factory.mktemp("metrics")))
        registry = app.state.service.metrics.registry
        names |= {f.name for f in registry.collect()}
    # FastStream's middleware declares its families when the first message passes.
    names |= {
        "faststream_received_messages",
        "faststream_received_messages_size_bytes",
        "faststream_received_processed_messages",
        "faststream_received_processed_messages_duration_seconds",
        "faststream_received_processed_messages_exceptions",
        "faststream_received_messages_in_process",
    }
    names |= {telemetry.STARTED, telemetry.COMPLETED, telemetry.FAILED}
    return names | TEMPORAL_SDK_METRICS


def dashboards() -> list[Path]:
    found = sorted(DASHBOARDS.glob("*.json"))
    assert found, "no dashboard JSON in deploy/grafana/dashboards"
    return found


def all_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for panel in dashboard["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))
    return out


# ---------------------------------------------------------------------------------------------
# Prometheus
# ---------------------------------------------------------------------------------------------


def test_promtool_accepts_the_prometheus_configuration_and_its_rules() -> None:
    assert PROMTOOL.is_file(), f"{PROMTOOL} is missing: `make install` extracts it"
    checked = subprocess.run(
        [str(PROMTOOL), "check", "config", str(PROMETHEUS_CONFIG)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "1 rule files found" in checked.stdout
    rules = subprocess.run(
        [str(PROMTOOL), "check", "rules", str(ALERTS)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert rules.returncode == 0, rules.stdout + rules.stderr


def test_promtool_refuses_a_broken_configuration(tmp_path: Path) -> None:
    """The check can fail: a scrape job without a name is refused."""
    broken = tmp_path / "prometheus.yml"
    broken.write_text("scrape_configs:\n  - static_configs:\n      - targets: ['x:1']\n")
    checked = subprocess.run(
        [str(PROMTOOL), "check", "config", str(broken)], capture_output=True, text=True, timeout=60
    )
    assert checked.returncode != 0


def test_every_process_is_scraped_at_its_compose_address(services: dict[str, Any]) -> None:
    config = load_yaml(PROMETHEUS_CONFIG)
    targets = {
        job["job_name"]: [t for static in job["static_configs"] for t in static["targets"]]
        for job in config["scrape_configs"]
    }
    for name, port in SERVICE_PORTS.items():
        assert targets.get(name) == [f"{name}:{port}"], name
        assert name in services
    assert targets["otel-collector"] == ["otel-collector:8888"]


def test_prometheus_gets_its_files_mounted(services: dict[str, Any]) -> None:
    mounts = {volume_target(v): volume_source(v) for v in services["prometheus"]["volumes"]}
    assert (REPO / mounts["/etc/prometheus/prometheus.yml"]).resolve() == PROMETHEUS_CONFIG
    # rule_files are resolved beside the configuration file.
    assert (REPO / mounts["/etc/prometheus/alerts.yml"]).resolve() == ALERTS
    assert "--config.file=/etc/prometheus/prometheus.yml" in services["prometheus"]["command"]


def test_alert_rules_use_only_declared_metrics(declared_metrics: set[str]) -> None:
    rules = load_yaml(ALERTS)
    for group in rules["groups"]:
        for rule in group["rules"]:
            for name in _METRIC.findall(rule["expr"]):
                assert family(name) in declared_metrics, (rule["alert"], name)


# ---------------------------------------------------------------------------------------------
# Grafana
# ---------------------------------------------------------------------------------------------


def test_dashboards_are_valid_grafana_json() -> None:
    datasources = {d["uid"]: d["type"] for d in load_yaml(DATASOURCES)["datasources"]}
    uids: set[str] = set()
    for path in dashboards():
        dashboard = json.loads(path.read_text(encoding="utf-8"))
        assert dashboard["uid"] not in uids, path
        uids.add(dashboard["uid"])
        assert dashboard["title"]
        assert isinstance(dashboard["schemaVersion"], int)
        panels = all_panels(dashboard)
        ids = [p["id"] for p in panels]
        assert len(ids) == len(set(ids)), f"{path.name}: duplicate panel ids"
        for panel in panels:
            grid = panel["gridPos"]
            assert grid["w"] > 0, panel["title"]
            assert grid["h"] > 0, panel["title"]
            assert grid["x"] >= 0, panel["title"]
            assert grid["x"] + grid["w"] <= 24, panel["title"]
            if panel["type"] == "row":
                continue
            assert panel["targets"], panel["title"]
            source = panel["datasource"]
            assert datasources.get(source["uid"]) == source["type"], panel["title"]
            for target in panel["targets"]:
                assert target["expr"].strip(), panel["title"]
                assert target["expr"].count("(") == target["expr"].count(")"), panel["title"]


def test_dashboards_show_only_metrics_the_platform_declares(declared_metrics: set[str]) -> None:
    for path in dashboards():
        for panel in all_panels(json.loads(path.read_text(encoding="utf-8"))):
            for target in panel.get("targets", []):
                for name in _METRIC.findall(target["expr"]):
                    assert family(name) in declared_metrics, (path.name, panel["title"], name)


def test_the_dashboard_shows_what_operators_asked_for() -> None:
    shown = {
        family(name)
        for path in dashboards()
        for panel in all_panels(json.loads(path.read_text(encoding="utf-8")))
        for target in panel.get("targets", [])
        for name in _METRIC.findall(target["expr"])
    }
    assert shown >= REQUIRED_ON_DASHBOARD, REQUIRED_ON_DASHBOARD - shown


def test_grafana_is_provisioned_with_the_dashboards_and_both_datasources(
    services: dict[str, Any],
) -> None:
    grafana = services["grafana"]
    mounts = {volume_target(v): volume_source(v) for v in grafana["volumes"]}
    assert (
        REPO / mounts["/etc/grafana/provisioning"]
    ).resolve() == DEPLOY / "grafana" / "provisioning"
    [provider] = load_yaml(DASHBOARD_PROVIDERS)["providers"]
    dashboards_dir = provider["options"]["path"]
    assert (REPO / mounts[dashboards_dir]).resolve() == DASHBOARDS
    datasources = {d["type"]: d["url"] for d in load_yaml(DATASOURCES)["datasources"]}
    for kind, service in (("prometheus", "prometheus"), ("jaeger", "jaeger")):
        host = urlsplit(datasources[kind]).hostname
        assert host == service, kind
        assert service in services, kind
    assert environment(grafana)["GF_SECURITY_ADMIN_PASSWORD"].startswith(
        "${GRAFANA_ADMIN_PASSWORD:?"
    )


# ---------------------------------------------------------------------------------------------
# Traces
# ---------------------------------------------------------------------------------------------


def test_every_process_exports_its_spans_to_the_collector(services: dict[str, Any]) -> None:
    collector = load_yaml(COLLECTOR_CONFIG)
    http = collector["receivers"]["otlp"]["protocols"]["http"]["endpoint"]
    port = int(http.rpartition(":")[2])
    for name in SERVICE_PORTS:
        endpoint = environment(services[name])["INCENTIVES_OTLP_ENDPOINT"]
        parts = urlsplit(endpoint)
        assert (parts.hostname, parts.port) == ("otel-collector", port), name


def test_the_collector_forwards_traces_to_jaeger(services: dict[str, Any]) -> None:
    collector = load_yaml(COLLECTOR_CONFIG)
    [pipeline] = collector["service"]["pipelines"].values()
    assert pipeline["receivers"] == ["otlp"]
    for exporter in pipeline["exporters"]:
        host = collector["exporters"][exporter]["endpoint"].rpartition(":")[0]
        assert host in services, exporter
    for processor in pipeline["processors"]:
        assert processor in collector["processors"]
    mounts = {volume_target(v): volume_source(v) for v in services["otel-collector"]["volumes"]}
    [config_flag] = services["otel-collector"]["command"]
    assert (REPO / mounts[config_flag.removeprefix("--config=")]).resolve() == COLLECTOR_CONFIG


def test_observability_uis_are_on_loopback_only(services: dict[str, Any]) -> None:
    for name in ("prometheus", "grafana", "jaeger"):
        for mapping in ports(services[name]):
            assert mapping.host_ip == "127.0.0.1", name
    assert not services["otel-collector"].get("ports")
