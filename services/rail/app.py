"""The simulated rail's HTTP API, shaped like a real payment rail's.

- ``POST /v1/payments`` with an ``Idempotency-Key`` header pays once per key: the same key
  again answers with the payment already made (200), never a second one. A key reused for a
  different payment is refused (422).
- ``POST /v1/payment-batches`` makes up to 500 payments in one request, each with its own
  idempotency key, as a bank's bulk payment file does; each gets its own outcome (made now,
  made before, temporarily unavailable, or a key reused for a different payment).
- ``GET /v1/payments/{idempotency_key}`` looks a payment up (404 when the rail never made it).
- ``GET /v1/payments?since=...`` lists payments made since a time, for reconciliation.
- ``POST /v1/control`` (dev mode only) sets the behaviour of the next N payment requests:
  ``fail_transiently`` (503, nothing paid), ``reject`` (a permanent refusal, recorded),
  ``timeout_after_paying`` (paid and recorded, then the answer is withheld for
  ``delay_seconds``) and ``slow`` (answers after ``delay_seconds``). In a batch, each payment
  counts as one request: its own mode, and the answer withheld or delayed when any asks it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, FastAPI, Header, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, model_validator

from contracts.envelope import UtcDatetime, utcnow
from contracts.iso import CurrencyCode
from contracts.money import NonNegativeDecimal
from services.kit.db import UTCDateTime, create_engine
from services.kit.errors import NotFound, RetryableError, ValidationFailed
from services.kit.health import health_router
from services.kit.http import NulGate, install_openapi, problem_responses
from services.kit.metrics import Metrics, observe_app
from services.kit.problems import install_problem_handlers
from services.rail.settings import Settings

METADATA = sa.MetaData()
PAYMENTS = sa.Table(
    "rail_payments",
    METADATA,
    sa.Column("id", sa.String(50), primary_key=True),
    sa.Column("idempotency_key", sa.String(200), nullable=False, unique=True),
    sa.Column("amount", sa.Numeric(22, 4), nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("beneficiary", sa.String(100), nullable=False),
    sa.Column("reference", sa.String(200), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("reason", sa.Text(), nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Index("ix_rail_payments_created", "created_at"),
)


class Status(StrEnum):
    PAID = "paid"
    REJECTED = "rejected"


class Mode(StrEnum):
    """How the rail answers the next payment requests."""

    NORMAL = "normal"
    FAIL_TRANSIENTLY = "fail_transiently"
    REJECT = "reject"
    TIMEOUT_AFTER_PAYING = "timeout_after_paying"
    SLOW = "slow"


class PaymentRequest(BaseModel):
    """A payment to make."""

    model_config = ConfigDict(extra="forbid")

    amount: NonNegativeDecimal = Field(description="Amount, as a decimal string.")
    currency: CurrencyCode = Field(description="ISO 4217 code.", examples=["EUR"])
    beneficiary: str = Field(min_length=1, max_length=100, description="Who is paid.")
    reference: str = Field(min_length=1, max_length=200, description="The payer's reference.")


#: What an idempotency key must be, in the header of one payment and in a batch's entries.
_KEY_RULES: dict[str, Any] = {
    "min_length": 1,
    "max_length": 200,
    "pattern": r"^\S+$",
    "description": "One key per intended payment; a retry with it never pays twice.",
}
#: Payments in one batch request at most.
BATCH_LIMIT = 500


class BatchedPayment(PaymentRequest):
    """A payment of a batch, with its own idempotency key."""

    idempotency_key: str = Field(**_KEY_RULES)


class PaymentBatch(BaseModel):
    """Payments to make, each once per key."""

    model_config = ConfigDict(extra="forbid")

    payments: list[BatchedPayment] = Field(
        min_length=1, max_length=BATCH_LIMIT, description="Each key at most once."
    )

    @model_validator(mode="after")
    def _keys_once(self) -> PaymentBatch:
        keys = [p.idempotency_key for p in self.payments]
        if len(set(keys)) != len(keys):
            raise ValueError("each idempotency key may appear once in a batch")
        return self


class Outcome(StrEnum):
    """What became of one payment of a batch."""

    CREATED = "created"
    EXISTING = "existing"
    UNAVAILABLE = "unavailable"
    CONFLICT = "conflict"


class PaymentView(BaseModel):
    """A payment the rail made (or refused)."""

    id: str = Field(description="The rail's reference of the payment.")
    idempotency_key: str = Field(description="The key it was made with.")
    amount: NonNegativeDecimal
    currency: str
    beneficiary: str
    reference: str
    status: Status = Field(description="`paid`, or `rejected` (permanent).")
    reason: str | None = Field(default=None, description="Why it was rejected.")
    created_at: UtcDatetime


class PaymentList(BaseModel):
    payments: list[PaymentView]


class BatchResult(BaseModel):
    """The outcome of one payment of a batch, in the batch's order."""

    idempotency_key: str
    outcome: Outcome = Field(
        description=(
            "`created` (made now), `existing` (made before with this key), `unavailable` "
            "(not made; retry with the same key) or `conflict` (the key was used for a "
            "different payment)."
        )
    )
    payment: PaymentView | None = Field(default=None, description="Created or existing.")
    detail: str | None = None


class BatchAnswer(BaseModel):
    results: list[BatchResult]


class Control(BaseModel):
    """Behaviour of the next ``count`` payment requests."""

    model_config = ConfigDict(extra="forbid")

    mode: Mode = Field(description="What to do.", examples=["fail_transiently"])
    count: int = Field(default=1, ge=1, le=10_000, description="For how many requests.")
    delay_seconds: float = Field(
        default=5.0, ge=0, le=600, description="Delay of `slow` and `timeout_after_paying`."
    )


class Behaviour:
    """The control endpoint's schedule: one mode for the next N requests."""

    def __init__(self) -> None:
        self.mode = Mode.NORMAL
        self.remaining = 0
        self.delay = 0.0

    def set(self, control: Control) -> None:
        self.mode, self.remaining, self.delay = control.mode, control.count, control.delay_seconds

    def next(self) -> tuple[Mode, float]:
        if self.remaining <= 0:
            return Mode.NORMAL, 0.0
        self.remaining -= 1
        return self.mode, self.delay


def _view(row: Any) -> PaymentView:
    return PaymentView(
        id=row.id,
        idempotency_key=row.idempotency_key,
        amount=Decimal(row.amount),
        currency=row.currency,
        beneficiary=row.beneficiary,
        reference=row.reference,
        status=Status(row.status),
        reason=row.reason,
        created_at=row.created_at,
    )


router = APIRouter(prefix="/v1", tags=["rail"])
Key = Annotated[str, Header(alias="Idempotency-Key", **_KEY_RULES)]


def _engine(request: Request) -> Any:
    return request.app.state.engine


@router.post(
    "/payments",
    status_code=201,
    responses={
        200: {"model": PaymentView, "description": "Made before with this key"},
        **problem_responses(422),
        503: {"description": "Temporarily unavailable; retry with the same key"},
    },
)
async def create_payment(
    request: Request, response: Response, body: PaymentRequest, idempotency_key: Key
) -> PaymentView:
    """Pay once per ``Idempotency-Key``."""
    behaviour: Behaviour = request.app.state.behaviour
    mode, delay = behaviour.next()
    if mode is Mode.FAIL_TRANSIENTLY:
        raise RetryableError("the rail is temporarily unavailable")
    if mode is Mode.SLOW:
        await asyncio.sleep(delay)
    engine = _engine(request)
    async with engine.begin() as conn:
        existing = (
            await conn.execute(
                sa.select(PAYMENTS).where(PAYMENTS.c.idempotency_key == idempotency_key)
            )
        ).first()
        if existing is not None:
            if not _same(existing, body):
                raise ValidationFailed(
                    f"Idempotency-Key {idempotency_key} was used for a different payment"
                )
            response.status_code = 200
            return _view(existing)
        values = _new_payment(idempotency_key, body, rejected=mode is Mode.REJECT)
        await conn.execute(PAYMENTS.insert(), values)
    if mode is Mode.TIMEOUT_AFTER_PAYING:
        # Paid and durable; the answer is withheld until the caller gives up (or the delay ends).
        await _withhold(request, delay)
    return PaymentView.model_validate(values)


@router.post("/payment-batches", responses=problem_responses(422))
async def create_payments(request: Request, body: PaymentBatch) -> BatchAnswer:
    """Make each payment of the batch once per its key, in one transaction."""
    behaviour: Behaviour = request.app.state.behaviour
    modes = [behaviour.next() for _ in body.payments]
    slow = [delay for mode, delay in modes if mode is Mode.SLOW]
    if slow:
        await asyncio.sleep(max(slow))
    keys = [p.idempotency_key for p in body.payments]
    results: list[BatchResult] = []
    async with _engine(request).begin() as conn:
        found = await conn.execute(sa.select(PAYMENTS).where(PAYMENTS.c.idempotency_key.in_(keys)))
        existing = {row.idempotency_key: row for row in found}
        made: list[dict[str, Any]] = []
        for payment, (mode, _delay) in zip(body.payments, modes, strict=True):
            key = payment.idempotency_key
            row = existing.get(key)
            if mode is Mode.FAIL_TRANSIENTLY:
                results.append(BatchResult(idempotency_key=key, outcome=Outcome.UNAVAILABLE))
            elif row is None:
                values = _new_payment(key, payment, rejected=mode is Mode.REJECT)
                made.append(values)
                results.append(
                    BatchResult(
                        idempotency_key=key,
                        outcome=Outcome.CREATED,
                        payment=PaymentView.model_validate(values),
                    )
                )
            elif _same(row, payment):
                results.append(
                    BatchResult(idempotency_key=key, outcome=Outcome.EXISTING, payment=_view(row))
                )
            else:
                results.append(
                    BatchResult(
                        idempotency_key=key,
                        outcome=Outcome.CONFLICT,
                        detail=f"Idempotency-Key {key} was used for a different payment",
                    )
                )
        if made:
            await conn.execute(PAYMENTS.insert(), made)
    withheld = [delay for mode, delay in modes if mode is Mode.TIMEOUT_AFTER_PAYING]
    if withheld:
        await _withhold(request, max(withheld))
    return BatchAnswer(results=results)


def _same(row: Any, body: PaymentRequest) -> bool:
    """Whether a payment already made with a key is the one asked for again."""
    return (
        Decimal(row.amount) == body.amount
        and row.currency == body.currency
        and row.beneficiary == body.beneficiary
    )


def _new_payment(key: str, body: PaymentRequest, *, rejected: bool) -> dict[str, Any]:
    return {
        "id": f"rail_{uuid.uuid4().hex[:20]}",
        "idempotency_key": key,
        "amount": body.amount,
        "currency": body.currency,
        "beneficiary": body.beneficiary,
        "reference": body.reference,
        "status": (Status.REJECTED if rejected else Status.PAID).value,
        "reason": "The beneficiary account is closed." if rejected else None,
        "created_at": utcnow(),
    }


async def _withhold(request: Request, seconds: float) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while asyncio.get_running_loop().time() < deadline:
        if await request.is_disconnected():
            return
        await asyncio.sleep(0.05)


@router.get("/payments/{idempotency_key}", responses=problem_responses(404))
async def get_payment(
    request: Request, idempotency_key: Annotated[str, Path(max_length=200)]
) -> PaymentView:
    """The payment made with ``idempotency_key``."""
    async with _engine(request).connect() as conn:
        row = (
            await conn.execute(
                sa.select(PAYMENTS).where(PAYMENTS.c.idempotency_key == idempotency_key)
            )
        ).first()
    if row is None:
        raise NotFound(f"no payment with key {idempotency_key}")
    return _view(row)


@router.get("/payments")
async def list_payments(
    request: Request,
    since: Annotated[datetime, Query(description="Payments made at or after this time (UTC).")],
    limit: Annotated[int, Query(ge=1, le=1000)] = 500,
) -> PaymentList:
    """Payments made since ``since``, oldest first."""
    async with _engine(request).connect() as conn:
        rows = await conn.execute(
            sa.select(PAYMENTS)
            .where(PAYMENTS.c.created_at >= since)
            .order_by(PAYMENTS.c.created_at, PAYMENTS.c.id)
            .limit(limit)
        )
        return PaymentList(payments=[_view(r) for r in rows])


@router.post("/control", status_code=204, responses=problem_responses(404))
async def control(request: Request, body: Control) -> None:
    """Dev mode only: how the next ``count`` payment requests are answered."""
    settings: Settings = request.app.state.settings
    if not settings.dev_mode:
        raise NotFound("no such endpoint")
    request.app.state.behaviour.set(body)


def create_app(settings: Settings | None = None) -> FastAPI:
    """The rail's ASGI app; its database is created with the lifespan."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(settings.database_url)
        async with engine.begin() as conn:
            await conn.run_sync(METADATA.create_all)
        app.state.engine = engine
        try:
            yield
        finally:
            await engine.dispose()

    app = FastAPI(
        title="Simulated bank rail",
        description="Payments with idempotency keys, for the embedded platform and tests.",
        version="0.1.0",
        lifespan=lifespan,
    )
    install_problem_handlers(app)
    app.state.settings = settings
    app.state.behaviour = Behaviour()

    async def database() -> str | None:
        async with app.state.engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))
        return None

    app.include_router(health_router("rail", lambda: {"database": database}))
    app.include_router(router)
    app.add_middleware(NulGate)
    # /metrics and the request spans, like every service: requests per route and status.
    observe_app(app, Metrics("rail"))
    install_openapi(app, authenticated=False)  # the rail takes no tokens: no 401
    return app
