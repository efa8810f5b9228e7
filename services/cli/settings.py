"""Settings of the ``incentives`` command (environment prefix ``INCENTIVES_``).

Every port of the embedded platform is configurable here, by environment variable
(``INCENTIVES_BROKER_PORT``, ``INCENTIVES_APPLICATIONS_PORT``...) or by the matching command-line
option. The service processes read the same variables, so one environment configures both.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

#: Services run by ``incentives up``, in start order. ``worker`` is the Temporal worker;
#: ``rail`` is the simulated bank rail that disbursement pays through.
SERVICE_NAMES: tuple[str, ...] = (
    "applications",
    "eligibility",
    "zones",
    "rail",
    "disbursement",
    "review",
    "audit",
    "worker",
)

#: Services with a public HTTP API (OpenAPI at /docs); the others expose only /health.
API_SERVICES: frozenset[str] = frozenset(
    {"applications", "review", "audit", "zones", "disbursement", "rail"}
)


#: Parts of the embedded platform that stand in for systems outside the program (a production
#: deployment uses the real rail instead): ``incentives up`` runs them, container files do not.
SIMULATORS: frozenset[str] = frozenset({"rail"})


def service_module(name: str) -> str:
    """The module whose ``main()`` runs service ``name``."""
    return "workflows.worker" if name == "worker" else f"services.{name}.main"


class PlatformSettings(BaseSettings):
    """Ports, addresses and the state folder of the embedded platform."""

    model_config = SettingsConfigDict(env_prefix="INCENTIVES_", extra="ignore")

    var_dir: Path = Field(
        default=Path("./var"),
        description="State folder: logs, PIDs, SQLite databases, the Temporal database.",
    )
    host: str = Field(
        default="127.0.0.1",
        description="Address the embedded broker and Temporal bind to and clients connect to.",
    )
    dev_mode: bool = Field(
        default=True, description="Passed to the services (dev secrets allowed)."
    )

    broker_port: int = Field(default=9092, description="Kafka port of the Tansu broker.")
    temporal_port: int = Field(default=7233, description="Temporal frontend gRPC port.")
    temporal_ui_port: int = Field(default=8233, description="Temporal Web UI port.")
    temporal_http_port: int | None = Field(
        default=None, description="Temporal HTTP API port (a free one when unset)."
    )
    temporal_metrics_port: int | None = Field(
        default=None, description="Temporal /metrics port (a free one when unset)."
    )

    applications_port: int = Field(default=8001, description="applications HTTP API port.")
    review_port: int = Field(default=8002, description="review HTTP API port.")
    audit_port: int = Field(default=8003, description="audit HTTP API port.")
    zones_port: int = Field(default=8004, description="zones HTTP API port.")
    disbursement_port: int = Field(default=8005, description="disbursement HTTP API port.")
    eligibility_port: int = Field(default=8006, description="eligibility health port.")
    worker_port: int = Field(default=8007, description="Temporal worker health port.")
    rail_port: int = Field(default=8010, description="Simulated bank rail HTTP API port.")

    kafka_bootstrap: str | None = Field(
        default=None,
        description="Kafka bootstrap servers for status/topics against an external cluster "
        "(default: the embedded broker's host:port).",
    )
    temporal_address: str | None = Field(
        default=None,
        description="Temporal frontend for status against an external server "
        "(default: the embedded server's host:port).",
    )

    topic_replication_factor: int = Field(
        default=1, ge=1, description="Replication factor `topics create` gives new topics."
    )

    startup_timeout: float = Field(
        default=90.0, description="Seconds `up` waits for every part to become healthy."
    )
    stop_timeout: float = Field(
        default=10.0, description="Seconds between SIGTERM and SIGKILL when stopping a process."
    )

    def service_port(self, name: str) -> int:
        """The HTTP (API or health) port of service ``name``."""
        return int(getattr(self, f"{name}_port"))

    def resolved_var_dir(self) -> Path:
        """The state folder as an absolute path (children may run from another directory)."""
        return self.var_dir.expanduser().resolve()

    def bootstrap(self) -> str:
        """Kafka bootstrap servers: the explicit setting or the embedded broker."""
        return self.kafka_bootstrap or f"{self.host}:{self.broker_port}"

    def temporal_target(self) -> str:
        """Temporal frontend address: the explicit setting or the embedded dev server."""
        return self.temporal_address or f"{self.host}:{self.temporal_port}"

    def wanted_ports(self) -> dict[str, int]:
        """Every port ``up`` will bind, keyed by the part that wants it."""
        ports = {
            "broker": self.broker_port,
            "temporal": self.temporal_port,
            "temporal-ui": self.temporal_ui_port,
        }
        if self.temporal_http_port:
            ports["temporal-http"] = self.temporal_http_port
        if self.temporal_metrics_port:
            ports["temporal-metrics"] = self.temporal_metrics_port
        for name in SERVICE_NAMES:
            ports[name] = self.service_port(name)
        return ports

    def port_env(self) -> dict[str, str]:
        """The ``INCENTIVES_*_PORT`` variables that reproduce these settings in a child."""
        env = {
            "INCENTIVES_BROKER_PORT": str(self.broker_port),
            "INCENTIVES_TEMPORAL_PORT": str(self.temporal_port),
            "INCENTIVES_TEMPORAL_UI_PORT": str(self.temporal_ui_port),
        }
        if self.temporal_http_port:
            env["INCENTIVES_TEMPORAL_HTTP_PORT"] = str(self.temporal_http_port)
        if self.temporal_metrics_port:
            env["INCENTIVES_TEMPORAL_METRICS_PORT"] = str(self.temporal_metrics_port)
        for name in SERVICE_NAMES:
            env[f"INCENTIVES_{name.upper()}_PORT"] = str(self.service_port(name))
        return env
