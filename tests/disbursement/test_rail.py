"""Payouts through the simulated rail in each of its modes: paid once, whatever fails when."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from contracts.v1.common import TrancheFailureReason
from services.disbursement import payouts
from services.disbursement.domain import AccountKind, PaymentState, award_account
from services.disbursement.payouts import pay_due, reconcile
from services.disbursement.rail import RailClient
from tests.disbursement.helpers import Db, disbursement_db, fund, open_award, release, running_rail
from tests.kit.helpers import eventually
from tests.support import free_port

REPO = Path(__file__).resolve().parents[2]
PAID = award_account("w1", AccountKind.PAID)
RESERVED = award_account("w1", AccountKind.RESERVED)


@dataclass
class Setup:
    db: Db
    rail: httpx.AsyncClient
    url: str
    database_url: str


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'd.db'}"
    async with disbursement_db(url) as db, running_rail(tmp_path / "rail") as rail:
        await fund(db)
        await open_award(db, "w1")
        yield Setup(db, rail, str(rail.base_url), url)


@asynccontextmanager
async def _client(url: str, *, timeout: float = 30.0) -> AsyncIterator[RailClient]:
    """A client of the rail; only the tests about timeouts shorten ``timeout`` (a loaded host
    can take seconds to answer, which must not read as the rail's silence)."""
    rail = RailClient(url, timeout=timeout)
    try:
        yield rail
    finally:
        await rail.aclose()


async def _control(setup: Setup, mode: str, count: int = 1, delay: float = 0.0) -> None:
    response = await setup.rail.post(
        "/v1/control", json={"mode": mode, "count": count, "delay_seconds": delay}
    )
    assert response.status_code == 204


async def _rail_payments(setup: Setup, key: str) -> int:
    listed = await setup.rail.get("/v1/payments", params={"since": "2000-01-01T00:00:00Z"})
    return sum(1 for p in listed.json()["payments"] if p["idempotency_key"] == key)


async def _state(setup: Setup, payment_id: str) -> str:
    return str(await setup.db.scalar("SELECT state FROM payments WHERE id = :p", p=payment_id))


async def _due_now(setup: Setup) -> None:
    """Time passes: every waiting payment is due again."""
    async with setup.db.engine.begin() as conn:
        await conn.execute(sa.text("UPDATE payments SET next_attempt_at = '2000-01-01 00:00:00'"))


async def test_a_released_tranche_is_paid_once(setup: Setup) -> None:
    payment_id = await release(setup.db, "w1")
    assert payment_id is not None
    async with _client(setup.url) as rail:
        assert await pay_due(setup.db.uow, rail) == 1
        assert await pay_due(setup.db.uow, rail) == 0
    assert await _state(setup, payment_id) == "paid"
    assert await setup.db.balance(PAID) == Decimal("100000.00")
    assert await setup.db.balance(RESERVED) == Decimal("150000.00")
    assert await _rail_payments(setup, payment_id) == 1
    assert (await setup.db.event_types())[-2:] == ["tranche.released", "tranche.paid"]


async def test_while_the_rail_is_away_the_loop_says_so_probes_it_and_then_drains_at_once(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(payouts, "RAIL_PROBE_SECONDS", 0.0)
    first = await release(setup.db, "w1")
    assert first is not None
    await _control(setup, "fail_transiently", count=3)
    watch = payouts.RailWatch()
    async with _client(setup.url) as rail:
        assert await pay_due(setup.db.uow, rail, watch=watch) == 0
        assert watch.waits.dependencies() == ["rail"]
        # Not due for a while by its own backoff, but probed: the rail is asked again.
        assert await pay_due(setup.db.uow, rail, watch=watch) == 0
        assert await pay_due(setup.db.uow, rail, watch=watch) == 0
        assert watch.waits.dependencies() == ["rail"]
        assert await pay_due(setup.db.uow, rail, watch=watch) == 1
        assert watch.waits.dependencies() == []
    assert await _state(setup, first) == "paid"
    assert await _rail_payments(setup, first) == 1
    assert "tranche.failed" not in await setup.db.event_types()


async def test_a_round_of_payouts_goes_to_the_rail_concurrently_and_pays_each_tranche_once(
    setup: Setup,
) -> None:
    awards = [f"b{i:02d}" for i in range(12)]
    for award in awards:
        await open_award(setup.db, award, "10000.00")
    payments = [await release(setup.db, award) for award in awards]
    assert all(payments)
    await _control(setup, "fail_transiently", count=3)  # three of the round are not taken
    async with _client(setup.url) as rail:
        assert await pay_due(setup.db.uow, rail, limit=50, concurrency=4) == 9
        await _due_now(setup)
        assert await pay_due(setup.db.uow, rail, limit=50, concurrency=4) == 3
        assert await pay_due(setup.db.uow, rail, limit=50, concurrency=4) == 0
    for payment_id in payments:
        assert payment_id is not None
        assert await _state(setup, payment_id) == "paid"
        assert await _rail_payments(setup, payment_id) == 1
    assert (await setup.db.event_types()).count("tranche.paid") == 12


async def test_transient_failures_are_retried_with_the_same_key_and_never_dead_lettered(
    setup: Setup,
) -> None:
    payment_id = await release(setup.db, "w1")
    assert payment_id is not None
    await _control(setup, "fail_transiently", count=2)
    async with _client(setup.url) as rail:
        assert await pay_due(setup.db.uow, rail) == 0
        assert await _state(setup, payment_id) == "pending"
        assert await pay_due(setup.db.uow, rail) == 0  # not due yet: backing off
        await _due_now(setup)
        assert await pay_due(setup.db.uow, rail) == 0
        await _due_now(setup)
        assert await pay_due(setup.db.uow, rail) == 1
    assert await setup.db.scalar("SELECT attempts FROM payments") == 2
    assert await _state(setup, payment_id) == "paid"
    assert await _rail_payments(setup, payment_id) == 1
    assert "tranche.failed" not in await setup.db.event_types()


async def test_a_permanent_rejection_fails_the_tranche_and_pays_nothing(setup: Setup) -> None:
    payment_id = await release(setup.db, "w1")
    assert payment_id is not None
    await _control(setup, "reject")
    async with _client(setup.url) as rail:
        assert await pay_due(setup.db.uow, rail) == 1
    assert await _state(setup, payment_id) == "rejected"
    assert await setup.db.scalar("SELECT state FROM tranches WHERE sequence = 1") == "failed"
    assert await setup.db.balance(PAID) == 0
    assert (await setup.db.event_types())[-1] == "tranche.failed"


async def test_a_timeout_after_the_rail_paid_is_settled_by_reconciliation(setup: Setup) -> None:
    payment_id = await release(setup.db, "w1")
    assert payment_id is not None
    await _control(setup, "timeout_after_paying", delay=3)
    async with _client(setup.url, timeout=0.5) as rail:
        assert await pay_due(setup.db.uow, rail) == 0
        assert await _state(setup, payment_id) == "unknown"
        assert await reconcile(setup.db.uow, rail) == 1
    assert await _state(setup, payment_id) == "paid"
    assert await _rail_payments(setup, payment_id) == 1
    assert await setup.db.balance(PAID) == Decimal("100000.00")


async def test_a_slow_rail_within_the_timeout_pays_normally(setup: Setup) -> None:
    payment_id = await release(setup.db, "w1")
    await _control(setup, "slow", delay=0.3)
    async with _client(setup.url) as rail:
        assert await pay_due(setup.db.uow, rail) == 1
    assert payment_id is not None
    assert await _state(setup, payment_id) == "paid"


async def test_sigkill_after_the_rail_paid_and_before_recording_pays_exactly_once(
    setup: Setup,
) -> None:
    payment_id = await release(setup.db, "w1")
    assert payment_id is not None
    # The rail records the payment, then withholds its answer: the payer is killed meanwhile.
    await _control(setup, "timeout_after_paying", delay=20)
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.disbursement.payout_process",
        setup.database_url,
        setup.url,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:

        async def rail_paid() -> bool:
            found = await setup.rail.get(f"/v1/payments/{payment_id}")
            return found.status_code == 200

        await eventually(rail_paid, timeout=60, interval=0.05)
        child.send_signal(signal.SIGKILL)
        assert await child.wait() == -signal.SIGKILL
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()
    assert await _state(setup, payment_id) == "pending"  # nothing was recorded
    async with _client(setup.url) as rail:  # the restarted service
        await reconcile(setup.db.uow, rail)
        assert await pay_due(setup.db.uow, rail) == 1
    assert await _state(setup, payment_id) == "paid"
    assert await _rail_payments(setup, payment_id) == 1
    assert await setup.db.scalar("SELECT count(*) FROM ledger_transfers WHERE cause = 'pay'") == 1
    assert await setup.db.balance(PAID) == Decimal("100000.00")


async def test_the_control_endpoint_exists_only_in_dev_mode(tmp_path: Path) -> None:
    from services.rail.app import create_app
    from services.rail.settings import Settings
    from tests.support import free_port, serving

    port = free_port()
    app = create_app(Settings(port=port, var_dir=tmp_path, dev_mode=False, jwt_secret="x" * 40))
    async with serving(app, port) as client:
        response = await client.post("/v1/control", json={"mode": "reject"})
    assert response.status_code == 404


async def test_incentives_payments_reconcile_settles_an_unknown_payment(tmp_path: Path) -> None:
    var = tmp_path / "var"
    url = f"sqlite+aiosqlite:///{var / 'disbursement.db'}"
    async with disbursement_db(url) as db, running_rail(tmp_path / "rail") as rail_http:
        await fund(db)
        await open_award(db, "w1")
        payment_id = await release(db, "w1")
        assert payment_id is not None
        setup = Setup(db, rail_http, str(rail_http.base_url), url)
        await _control(setup, "timeout_after_paying", delay=3)
        async with _client(setup.url, timeout=0.5) as rail:
            await pay_due(db.uow, rail)
        assert await _state(setup, payment_id) == "unknown"
        env = {k: v for k, v in os.environ.items() if not k.startswith("INCENTIVES_")}
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "services.cli",
            "payments",
            "reconcile",
            "--var-dir",
            str(var),
            "--rail-url",
            setup.url,
            cwd=REPO,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await child.communicate()
        assert child.returncode == 0, err.decode()
        assert "Settled 1 payment(s)" in out.decode()
        assert "0 still open" in out.decode()
        assert await _state(setup, payment_id) == "paid"
        assert await _rail_payments(setup, payment_id) == 1


def _batched(key: str, amount: str = "10.00") -> dict[str, str]:
    return {
        "idempotency_key": key,
        "amount": amount,
        "currency": "EUR",
        "beneficiary": "ACME",
        "reference": f"ref-{key}",
    }


async def test_a_batch_makes_each_payment_once_per_key_and_answers_each_on_its_own(
    setup: Setup,
) -> None:
    first = await setup.rail.post(
        "/v1/payment-batches", json={"payments": [_batched("k1"), _batched("k2")]}
    )
    assert first.status_code == 200, first.text
    assert [(r["idempotency_key"], r["outcome"]) for r in first.json()["results"]] == [
        ("k1", "created"),
        ("k2", "created"),
    ]
    made = {r["idempotency_key"]: r["payment"]["id"] for r in first.json()["results"]}

    await _control(setup, "fail_transiently", count=1)
    again = await setup.rail.post(
        "/v1/payment-batches",
        json={"payments": [_batched("k3"), _batched("k1"), _batched("k2", "11.00")]},
    )
    results = again.json()["results"]
    assert [(r["idempotency_key"], r["outcome"]) for r in results] == [
        ("k3", "unavailable"),  # the rail failed this one: nothing made, retry with its key
        ("k1", "existing"),
        ("k2", "conflict"),  # the key was used for another amount: refused, nothing made
    ]
    assert results[1]["payment"]["id"] == made["k1"]
    assert results[2]["payment"] is None
    for key, count in (("k1", 1), ("k2", 1), ("k3", 0)):
        assert await _rail_payments(setup, key) == count


async def test_a_batch_naming_a_key_twice_is_refused_whole(setup: Setup) -> None:
    response = await setup.rail.post(
        "/v1/payment-batches", json={"payments": [_batched("k1"), _batched("k1")]}
    )
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    assert await _rail_payments(setup, "k1") == 0


async def test_the_client_maps_each_batch_answer_and_an_unreachable_rail(setup: Setup) -> None:
    from services.disbursement.rail import RailPayment

    def payment(key: str, amount: str = "10.00") -> RailPayment:
        return RailPayment(key, Decimal(amount), "EUR", "ACME", f"ref-{key}")

    await _control(setup, "reject", count=1)
    async with _client(setup.url) as rail:
        rejected, paid = await rail.pay_many([payment("c1"), payment("c2")])
        assert rejected.state is PaymentState.REJECTED
        assert rejected.reason_code is TrancheFailureReason.BENEFICIARY_INVALID
        assert paid.state is PaymentState.PAID
        assert paid.reference
        (conflict,) = await rail.pay_many([payment("c2", "99.00")])
        assert conflict.state is PaymentState.REJECTED
        assert conflict.reason_code is TrancheFailureReason.RAIL_REJECTED
    async with _client(f"http://127.0.0.1:{free_port()}") as nowhere:
        answers = await nowhere.pay_many([payment("c3"), payment("c4")])
    assert [(a.state, a.maybe_sent) for a in answers] == [(None, False), (None, False)]
