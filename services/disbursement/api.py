"""The disbursement API: budgets (admins set and top them up) and ledger views.

Routes are thin: they check the caller, call one use case of
:mod:`services.disbursement.commands` inside one unit of work and commit it once, or read
through :mod:`services.disbursement.store`. Admins change budgets; admins and auditors read.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response

from contracts.envelope import utcnow
from services.disbursement import commands, store
from services.disbursement.commands import as_balance, as_money
from services.disbursement.domain import AccountKind, award_account, budget_account
from services.disbursement.schemas import (
    AwardLedger,
    BudgetCreate,
    BudgetLedger,
    BudgetList,
    BudgetView,
    LedgerEntry,
    TopUp,
    TrancheView,
)
from services.kit.auth import Principal, Role, require_roles
from services.kit.errors import NotFound
from services.kit.events import Origin
from services.kit.http import location, problem_responses, success_headers
from services.kit.runtime import Service

router = APIRouter(prefix="/v1", tags=["budgets and ledger"])

Admin = Annotated[Principal, require_roles(Role.ADMIN)]
Reader = Annotated[Principal, require_roles(Role.ADMIN, Role.AUDITOR)]
Id = Annotated[str, Path(max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]*$")]


def _responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return problem_responses(403, *statuses)


def _service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


def _entries(rows: list[Any]) -> list[LedgerEntry]:
    return [
        LedgerEntry(
            id=r.id,
            at=r.created_at,
            cause=r.cause,
            debit=r.debit,
            credit=r.credit,
            amount=as_money(Decimal(r.amount), r.currency),
            award_id=r.award_id,
            tranche=r.sequence,
            actor=r.actor,
            note=r.note,
        )
        for r in rows
    ]


async def _budget_view(session: Any, budget_id: str) -> tuple[Any, BudgetView]:
    budget = await store.budget(session, budget_id)
    if budget is None:
        raise NotFound(f"budget {budget_id} not found")
    awards = await store.awards_of_budget(session, budget_id)
    accounts = [budget_account(budget_id, k) for k in (AccountKind.FUNDING, AccountKind.AVAILABLE)]
    accounts += [
        award_account(a.id, k) for a in awards for k in (AccountKind.RESERVED, AccountKind.PAID)
    ]
    balances = await store.balances(session, accounts)

    def total(kind: AccountKind) -> Decimal:
        return sum((balances[award_account(a.id, kind)] for a in awards), Decimal(0))

    currency = budget.currency
    view = BudgetView(
        id=budget.id,
        incentive_type=budget.incentive_type,
        fiscal_year=budget.fiscal_year,
        funded=as_balance(-balances[accounts[0]], currency),
        free=as_balance(balances[accounts[1]], currency),
        reserved=as_balance(total(AccountKind.RESERVED), currency),
        paid=as_balance(total(AccountKind.PAID), currency),
        waitlist=[w.award_id for w in await store.waitlist(session, budget_id)],
    )
    return budget, view


@router.post(
    "/budgets",
    status_code=201,
    summary="Set a budget",
    responses={**success_headers(201, location=True), **_responses(409)},
)
async def create_budget(
    request: Request, response: Response, body: BudgetCreate, caller: Admin
) -> BudgetView:
    """Create the budget of an incentive type and fiscal year (id ``<type>-<year>``), funded
    with ``amount``. 409 when it exists (top it up instead)."""
    async with _service(request).uow() as uow:
        budget_id = await commands.create_budget(
            uow,
            incentive_type=body.incentive_type,
            fiscal_year=body.fiscal_year,
            amount=body.amount,
            origin=Origin(caller.to_actor()),
            now=utcnow(),
        )
        await uow.commit()
    response.headers["Location"] = location("/v1/budgets", budget_id, "ledger")
    async with _service(request).uow() as uow:
        return (await _budget_view(uow.session, budget_id))[1]


@router.post(
    "/budgets/{budget_id}/top-ups",
    summary="Top up a budget",
    responses=_responses(404),
)
async def top_up(request: Request, budget_id: Id, body: TopUp, caller: Admin) -> BudgetView:
    """Add money to a budget; zero, negative or a foreign currency is refused (422)."""
    async with _service(request).uow() as uow:
        await commands.top_up_budget(
            uow, budget_id, body.amount, Origin(caller.to_actor()), utcnow()
        )
        await uow.commit()
    async with _service(request).uow() as uow:
        return (await _budget_view(uow.session, budget_id))[1]


@router.get("/budgets", summary="Every budget", responses=_responses())
async def list_budgets(request: Request, _caller: Reader) -> BudgetList:
    """Funded, free, reserved and paid, per budget."""
    async with _service(request).uow() as uow:
        budgets = await store.all_budgets(uow.session)
        return BudgetList(budgets=[(await _budget_view(uow.session, b.id))[1] for b in budgets])


@router.get("/budgets/{budget_id}/ledger", summary="A budget's ledger", responses=_responses(404))
async def budget_ledger(request: Request, budget_id: Id, _caller: Reader) -> BudgetLedger:
    """Funded, free, reserved and paid, and every entry with its cause."""
    async with _service(request).uow() as uow:
        _, view = await _budget_view(uow.session, budget_id)
        entries = _entries(await store.transfers(uow.session, budget_id=budget_id))
    return BudgetLedger(**view.model_dump(), entries=entries)


@router.get("/awards/{award_id}/ledger", summary="An award's ledger", responses=_responses(404))
async def award_ledger(request: Request, award_id: Id, _caller: Reader) -> AwardLedger:
    """Reserved and paid, each tranche with its state and payment, and every entry."""
    async with _service(request).uow() as uow:
        session = uow.session
        award = await store.award(session, award_id)
        if award is None:
            raise NotFound(f"award {award_id} not found")
        reserved, paid = (
            award_account(award_id, k) for k in (AccountKind.RESERVED, AccountKind.PAID)
        )
        balances = await store.balances(session, [reserved, paid])
        payments = {p.sequence: p for p in await store.payments_of(session, award_id)}
        tranches = await store.tranches_of(session, award_id)
        entries = _entries(await store.transfers(session, award_id=award_id))
    currency = award.currency
    return AwardLedger(
        id=award.id,
        application_id=award.application_id,
        firm_id=award.firm_id,
        budget_id=award.budget_id,
        state=award.state,
        total=as_money(Decimal(award.total), currency),
        reserved=as_balance(balances[reserved], currency),
        paid=as_balance(balances[paid], currency),
        tranches=[
            TrancheView(
                sequence=t.sequence,
                milestone=t.milestone,
                amount=as_money(Decimal(t.amount), currency),
                state=t.state,
                payment_id=payments[t.sequence].id if t.sequence in payments else None,
                payment_state=payments[t.sequence].state if t.sequence in payments else None,
            )
            for t in tranches
        ],
        entries=entries,
    )
