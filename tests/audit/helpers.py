"""Shared helpers of the audit tests: a migrated log database and records to append."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncEngine

from services.audit.domain.checkpoint import Signer
from services.audit.main import MIGRATIONS
from services.audit.store import LogWriter
from services.kit.auth import Principal, Role, TokenService
from services.kit.db import create_engine
from services.kit.dlq import ConsumedRecord
from services.kit.migrations import upgrade_to_head
from services.kit.settings import DEV_JWT_SECRET

ORIGIN = "incentives.example/audit"


def record(n: int, *, topic: str = "applications.events", key: str | None = None) -> ConsumedRecord:
    """A distinct record (its value names ``n``), at offset ``n``."""
    return ConsumedRecord(
        topic=topic,
        partition=n % 3,
        offset=n,
        key=(key or f"APP-{n % 7}").encode(),
        value=f'{{"n": {n}, "nonce": "{uuid.uuid4().hex}"}}'.encode(),
        headers=(("type", b"test.record"),),
    )


@asynccontextmanager
async def log_database(url: str) -> AsyncIterator[AsyncEngine]:
    """A migrated audit database at ``url``."""
    engine = create_engine(url)
    try:
        await upgrade_to_head(engine, MIGRATIONS)
        yield engine
    finally:
        await engine.dispose()


async def writer_for(engine: AsyncEngine, signer: Signer | None = None) -> LogWriter:
    """A loaded writer on ``engine``."""
    writer = LogWriter(engine, signer or Signer.from_seed(ORIGIN, bytes(32)))
    await writer.load()
    return writer


TOKENS = TokenService(SecretStr(DEV_JWT_SECRET))


def auth(role: str) -> dict[str, str]:
    """An ``Authorization`` header for a principal of ``role`` (the development key)."""
    parsed = Role(role)
    principal = Principal(
        sub=f"{role}@gaip.example", role=parsed, firm_id="ACME" if parsed is Role.FIRM else None
    )
    return {"Authorization": f"Bearer {TOKENS.issue(principal)}"}


AUDITOR = auth("auditor")
