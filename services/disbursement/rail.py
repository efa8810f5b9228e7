"""The payment-rail adapter: the disbursement side of the rail's HTTP API (httpx).

Every call maps the rail's answer onto a :class:`~services.disbursement.commands.RailAnswer`:
paid, rejected (permanent), or transient (the rail is down, slow or answered 5xx). A timeout
after the request was sent is transient *and* may have paid: the payment becomes ``unknown``
and reconciliation asks the rail. The payment id is the ``Idempotency-Key``, so sending it
again can never pay twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import httpx

from contracts.v1.common import TrancheFailureReason
from services.disbursement.commands import RailAnswer
from services.disbursement.domain import PaymentState
from services.kit import tracing


@dataclass(frozen=True)
class RailPayment:
    """A payment to ask the rail for; its id is the idempotency key."""

    payment_id: str
    amount: Decimal
    currency: str
    beneficiary: str
    reference: str

    def as_json(self, *, key: bool = True) -> dict[str, str]:
        body = {
            "amount": format(self.amount, "f"),
            "currency": self.currency,
            "beneficiary": self.beneficiary,
            "reference": self.reference,
        }
        if key:
            body["idempotency_key"] = self.payment_id
        return body


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
        payment = RailPayment(payment_id, amount, currency, beneficiary, reference)
        try:
            response = await self._client.post(
                "/v1/payments",
                headers={"Idempotency-Key": payment_id},
                json=payment.as_json(key=False),
            )
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            return RailAnswer(None, reason=f"rail unreachable: {type(exc).__name__}")
        except httpx.TransportError as exc:  # sent, answer lost: it may have paid
            return RailAnswer(None, reason=f"no answer: {type(exc).__name__}", maybe_sent=True)
        return _answer(response)

    async def pay_many(self, payments: Sequence[RailPayment]) -> list[RailAnswer]:
        """Ask the rail to make ``payments`` in one request (each with its id as its key); one
        answer per payment, in order. A request that fails answers every payment alike."""
        if not payments:
            return []
        try:
            response = await self._client.post(
                "/v1/payment-batches",
                json={"payments": [payment.as_json() for payment in payments]},
            )
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            answer = RailAnswer(None, reason=f"rail unreachable: {type(exc).__name__}")
            return [answer] * len(payments)
        except httpx.TransportError as exc:  # sent, answer lost: any of them may be paid
            answer = RailAnswer(None, reason=f"no answer: {type(exc).__name__}", maybe_sent=True)
            return [answer] * len(payments)
        if response.status_code != 200:
            return [_answer(response)] * len(payments)
        results = response.json()["results"]
        by_key = {result["idempotency_key"]: result for result in results}
        return [_batch_answer(by_key.get(payment.payment_id)) for payment in payments]

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
        return _made(response.json())
    if response.status_code >= 500 or response.status_code == 429:
        return RailAnswer(None, reason=f"rail answered {response.status_code}")
    return _refused(f"rail refused the request ({response.status_code}): {response.text[:300]}")


def _made(payment: dict[str, Any]) -> RailAnswer:
    """The answer for a payment the rail made (paid) or recorded as rejected."""
    if payment["status"] == "paid":
        return RailAnswer(PaymentState.PAID, reference=payment["id"])
    return RailAnswer(
        PaymentState.REJECTED,
        reference=payment["id"],
        reason=payment.get("reason") or "The rail rejected the payment.",
        reason_code=TrancheFailureReason.BENEFICIARY_INVALID,
    )


def _refused(reason: str) -> RailAnswer:
    return RailAnswer(
        PaymentState.REJECTED, reason=reason, reason_code=TrancheFailureReason.RAIL_REJECTED
    )


def _batch_answer(result: dict[str, Any] | None) -> RailAnswer:
    """One payment's answer from a batch result (None: the rail left it out)."""
    if result is None:
        return RailAnswer(None, reason="the rail's batch answer left it out", maybe_sent=True)
    outcome = result["outcome"]
    if outcome in ("created", "existing") and result.get("payment") is not None:
        return _made(result["payment"])
    if outcome == "conflict":
        return _refused(f"rail refused the payment: {(result.get('detail') or '')[:300]}")
    return RailAnswer(None, reason=f"rail answered {outcome}")
