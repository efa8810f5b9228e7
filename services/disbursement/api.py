"""The disbursement API: budgets and the ledger (filled in below)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/v1", tags=["budgets"])
