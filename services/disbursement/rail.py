"""The payment-rail adapter: the disbursement side of the rail's HTTP API (httpx).

Every call maps the rail's answer onto a :class:`~services.disbursement.commands.RailAnswer`:
paid, rejected (permanent), or transient (the rail is down, slow or answered 5xx). A timeout
after the request was sent is transient *and* may have paid: the payment becomes ``unknown``
and reconciliation asks the rail. The payment id is the ``Idempotency-Key``, so sending it
again can never pay twice.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import httpx

from contracts.v1.common import TrancheFailureReason
from services.disbursement.commands import RailAnswer
from services.disbursement.domain import PaymentState
from services.kit import tracing


class RailClient:
    """A client of one rail; create it in the composition root and close it on shutdown."""

    def __init__(self, base_url: str, *, timeout: float = 5.0) -> None:
        self.base_url = base_url
        self._client = tracing.instrument_client(
            httpx.AsyncClient(base_url=base_url, timeout=timeout)
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def pay(
        self, payment_id: str, amount: Decimal, currency: str, beneficiary: str, reference: str
    ) -> RailAnswer:
        """Ask the rail to pay, with ``payment_id`` as the idempotency key."""
        try:
            response = await self._client.post(
                "/v1/payments",
                headers={"Idempotency-Key": payment_id},
                json={
                    "amount": format(amount, "f"),
                    "currency": currency,
                    "beneficiary": beneficiary,
                    "reference": reference,
                },
            )
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            return RailAnswer(None, reason=f"rail unreachable: {type(exc).__name__}")
        except httpx.TransportError as exc:  # sent, answer lost: it may have paid
            return RailAnswer(None, reason=f"no answer: {type(exc).__name__}", maybe_sent=True)
        return _answer(response)

    async def look_up(self, payment_id: str) -> RailAnswer | None:
        """What the rail knows of the payment made with ``payment_id``; None: never made."""
        try:
            response = await self._client.get(f"/v1/payments/{payment_id}")
        except httpx.TransportError as exc:
            return RailAnswer(None, reason=f"rail unreachable: {type(exc).__name__}")
        if response.status_code == 404:
            return None
        return _answer(response)

    async def since(self, when: datetime) -> list[dict[str, Any]]:
        """The payments the rail made since ``when`` (raises httpx errors when unreachable)."""
        response = await self._client.get("/v1/payments", params={"since": when.isoformat()})
        response.raise_for_status()
        payments: list[dict[str, Any]] = response.json()["payments"]
        return payments


def _answer(response: httpx.Response) -> RailAnswer:
    if response.status_code in (200, 201):
        body = response.json()
        if body["status"] == "paid":
            return RailAnswer(PaymentState.PAID, reference=body["id"])
        return RailAnswer(
            PaymentState.REJECTED,
            reference=body["id"],
            reason=body.get("reason") or "The rail rejected the payment.",
            reason_code=TrancheFailureReason.BENEFICIARY_INVALID,
        )
    if response.status_code >= 500 or response.status_code == 429:
        return RailAnswer(None, reason=f"rail answered {response.status_code}")
    return RailAnswer(
        PaymentState.REJECTED,
        reason=f"rail refused the request ({response.status_code}): {response.text[:300]}",
        reason_code=TrancheFailureReason.RAIL_REJECTED,
    )
