"""The submissions baseline: a bare FastAPI app doing one INSERT into PostgreSQL per request.

Served by ``python -m uvicorn tests.bench.bare_insert_app:app`` in a process of its own, the
way the applications service is. Each POST parses its JSON body and inserts it, with its
``Idempotency-Key`` (unique), into one table through an asyncpg pool, committed (and fsynced)
as a single statement; the answer is a small JSON. ``BENCH_DATABASE_URL`` names the database
(``postgresql://`` or ``postgresql+asyncpg://``); the table is created at startup.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import asyncpg
from fastapi import FastAPI, Header, Request

#: Connections in the pool: what the service's engine has (pool size 10).
POOL_SIZE = 10


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Open the pool and create the table."""
    dsn = os.environ["BENCH_DATABASE_URL"].replace("postgresql+asyncpg://", "postgresql://")
    pool = await asyncpg.create_pool(dsn, min_size=POOL_SIZE, max_size=POOL_SIZE)
    await pool.execute(
        "CREATE TABLE IF NOT EXISTS bare_submissions ("
        " id BIGSERIAL PRIMARY KEY, idempotency_key TEXT NOT NULL UNIQUE,"
        " body JSONB NOT NULL, created_at TIMESTAMPTZ NOT NULL DEFAULT now())"
    )
    app.state.pool = pool
    try:
        yield
    finally:
        await pool.close()


app = FastAPI(lifespan=lifespan)


@app.post("/v1/applications/submissions", status_code=201)
async def submit(
    request: Request,
    body: dict[str, Any],
    idempotency_key: Annotated[str, Header()],
) -> dict[str, Any]:
    """Parse the JSON body, insert it with its key, answer a small JSON."""
    row_id = await request.app.state.pool.fetchval(
        "INSERT INTO bare_submissions (idempotency_key, body) VALUES ($1, $2) RETURNING id",
        idempotency_key,
        json.dumps(body),
    )
    return {"id": row_id, "status": "submitted"}


@app.get("/health")
async def health() -> dict[str, str]:
    """Ready once the pool is open."""
    return {"status": "ok"}
