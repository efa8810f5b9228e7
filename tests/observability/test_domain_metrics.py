"""The services' own metrics, in process: zone occupancy, budget money, the audit log, the rail."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from fastapi import FastAPI
from rich.console import Console

from services.audit.main import create_app as create_audit
from services.audit.settings import Settings as AuditSettings
from services.cli.metrics import parts_table, scrape_all
from services.cli.settings import PlatformSettings
from services.cli.status import metrics_urls
from services.disbursement.main import create_app as create_disbursement
from services.disbursement.settings import Settings as DisbursementSettings
from services.kit.metrics import parse_exposition as samples
from services.kit.metrics import sample_total as value
from services.zones.main import create_app as create_zones
from services.zones.settings import Settings as ZonesSettings
from tests.applications.helpers import auth
from tests.disbursement.helpers import running_rail
from tests.inprocess import InProcess, in_process_settings
from tests.support import free_port

CATALOGUE = """
[[zone]]
id = "z-obs"
name = "Observed Zone"
city = "Lahore"
sectors = []
capacity = { gpu_rack_unit = 4, office_seat = 3 }
"""

Start = Callable[[FastAPI], Awaitable[InProcess]]


async def test_zone_occupancy_is_read_from_the_capacity_rows(
    in_process: Start, tmp_path: Path
) -> None:
    catalogue = tmp_path / "catalogue.toml"
    catalogue.write_text(CATALOGUE)
    zones = await in_process(
        create_zones(in_process_settings(ZonesSettings, tmp_path, catalogue=catalogue))
    )

    found = samples((await zones.client.get("/metrics")).text)

    seats = {"zone": "z-obs", "unit_type": "office_seat"}
    assert value(found, "incentives_zone_units", state="capacity", **seats) == 3
    assert value(found, "incentives_zone_units", state="held", **seats) == 0
    assert value(found, "incentives_zone_units", state="allocated", **seats) == 0
    racks = {"zone": "z-obs", "unit_type": "gpu_rack_unit", "state": "capacity"}
    assert value(found, "incentives_zone_units", **racks) == 4


async def test_budget_money_shows_by_ledger_state(in_process: Start, tmp_path: Path) -> None:
    settings = in_process_settings(
        DisbursementSettings, tmp_path, rail_url=f"http://127.0.0.1:{free_port()}"
    )
    disbursement = await in_process(create_disbursement(settings))
    body = {
        "incentive_type": "grant",
        "fiscal_year": 2031,
        "amount": {"amount": "250000.00", "currency": "EUR"},
    }
    created = await disbursement.client.post("/v1/budgets", json=body, headers=auth("admin"))
    assert created.status_code == 201, created.text

    found = samples((await disbursement.client.get("/metrics")).text)

    assert value(found, "incentives_budget_amount", kind="available", currency="EUR") == 250000
    assert value(found, "incentives_budget_amount", kind="reserved", currency="EUR") == 0
    assert value(found, "incentives_payouts") == 0  # no payout yet


async def test_the_audit_log_size_shows(in_process: Start, tmp_path: Path) -> None:
    audit = await in_process(create_audit(in_process_settings(AuditSettings, tmp_path)))

    text = (await audit.client.get("/metrics")).text
    found = samples(text)

    assert value(found, "incentives_audit_log_leaves") == 0
    assert "incentives_audit_checkpoint_age_seconds" in text


async def test_the_rail_serves_its_request_metrics(tmp_path: Path) -> None:
    async with running_rail(tmp_path) as rail:
        payment = {
            "amount": "100.00",
            "currency": "EUR",
            "beneficiary": "firm-obs",
            "reference": "tranche 1",
        }
        for _ in range(2):  # the same key twice: paid once, answered twice
            paid = await rail.post("/v1/payments", json=payment, headers={"Idempotency-Key": "k1"})
            assert paid.status_code in (200, 201), paid.text
        missing = await rail.get("/v1/payments/nobody")
        assert missing.status_code == 404

        response = await rail.get("/metrics")
        assert response.status_code == 200
        found = samples(response.text)

    payments = {"handler": "/v1/payments", "method": "POST"}
    assert value(found, "http_requests_total", **payments) == 2
    lookup = {"handler": "/v1/payments/{idempotency_key}", "status": "404"}
    assert value(found, "http_requests_total", **lookup) == 1
    # Route templates only: the key looked up is not a label.
    assert "nobody" not in response.text
    assert value(found, "http_request_duration_seconds_count", **payments) == 2


async def test_status_metrics_shows_the_rails_requests(tmp_path: Path) -> None:
    assert "rail" in metrics_urls(PlatformSettings(var_dir=tmp_path))  # scraped like the others
    async with running_rail(tmp_path) as rail:
        assert (await rail.get("/v1/payments/nobody")).status_code == 404
        scrapes = await scrape_all({"rail": str(rail.base_url.join("/metrics"))})

    assert scrapes[0].error is None, scrapes[0].error
    console = Console(record=True, width=200)
    console.print(parts_table(scrapes))
    (row,) = [line for line in console.export_text().splitlines() if "rail" in line]
    cells = [cell.strip() for cell in row.split("│")[1:-1]]
    assert cells[:3] == ["rail", "1", "0"]  # one request, no 5xx
