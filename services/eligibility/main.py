"""Composition root of the eligibility service: ``create_app`` wires it, ``main`` runs it."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from contracts.topics import get_topic
from services.eligibility.domain import RuleSetError
from services.eligibility.handlers import CONSUMED_TYPES, ELIGIBILITY_TOPIC, PRODUCER, Assessor
from services.eligibility.rulefiles import load_catalog
from services.eligibility.settings import Settings
from services.kit.logging import get_logger
from services.kit.runtime import Service, run_service

MIGRATIONS = Path(__file__).parent / "migrations"

log = get_logger(__name__)


def consumed_topics() -> tuple[str, ...]:
    """The topics this service consumes: ``applications.events``."""
    return (get_topic("applications.events").name,)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the ASGI app; the broker, database and relay start with its lifespan.

    The rule sets are read, validated and compiled here, once: the message path never reads a
    file or compiles an expression.

    Raises:
        RuleSetError: a rule-set file under ``settings.rules_dir`` is invalid.
    """
    settings = settings or Settings()
    rule_catalog = load_catalog(settings.rules_dir)
    service = Service(settings, migrations=MIGRATIONS)
    service.consume(
        *consumed_topics(),
        handler=Assessor(rule_catalog),
        types=CONSUMED_TYPES,
        description="Submitted and amended applications, to assess eligibility.",
    )
    service.sends(
        ELIGIBILITY_TOPIC,
        ("eligibility.assessed",),
        producer=PRODUCER,
        description=(
            "`eligibility.assessed`: one decision per application revision, written to the"
            " outbox with the decision record."
        ),
    )
    versions = ", ".join(
        f"{r.label} (from {r.effective_from}, sha256 {r.sha256[:12]})"
        for r in rule_catalog.rule_sets
    )
    log.info("rule sets loaded", rule_sets=versions)
    return service.create_app(
        title="Eligibility service",
        description=(
            "Evaluates submitted and amended applications against versioned, declarative rule"
            " sets (CEL) and publishes `eligibility.assessed` with the rule-set version and"
            f" content hash. Rule sets: {versions}. HTTP serves health and documentation only."
        ),
    )


def _create_app_or_exit(settings: Settings) -> FastAPI:
    try:
        return create_app(settings)
    except RuleSetError as exc:
        # A configuration error, like invalid settings: one clear message, no traceback.
        log.error(f"invalid eligibility rule sets: {exc}")
        raise SystemExit(2) from None


def main() -> None:
    """Run the service until SIGTERM/SIGINT, configured by environment."""
    run_service(Settings, _create_app_or_exit)


if __name__ == "__main__":
    main()
