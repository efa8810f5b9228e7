"""The firm's use cases without HTTP: commands on a unit of work factory, outcomes or kit errors.

A SQLite file, migrated by the kit's Service; no broker (the outbox rows stay unpublished and
are counted), no app, no client.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text

from contracts.status import Status
from contracts.v1.applications import ApplicationContent
from services.applications import commands
from services.applications.main import MIGRATIONS
from services.applications.schemas import AmendRequest, WithdrawRequest
from services.applications.settings import Settings
from services.kit.auth import Principal, Role
from services.kit.errors import Conflict, ValidationFailed
from services.kit.runtime import Service
from tests.applications.helpers import content, key
from tests.support import free_port

FIRM = Principal(sub="dev@cmd.example", role=Role.FIRM, firm_id="CMD")


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[Service]:
    svc = Service(
        Settings(var_dir=tmp_path, kafka_bootstrap=f"127.0.0.1:{free_port()}"),
        migrations=MIGRATIONS,
    )
    await svc.start()
    try:
        yield svc
    finally:
        await svc.stop()


async def outbox_types(service: Service) -> list[str]:
    async with service.engine.connect() as connection:
        rows = await connection.execute(text("SELECT value FROM outbox ORDER BY id"))
        return [json.loads(row[0])["type"] for row in rows]


async def test_a_keyed_submission_acts_once_and_its_retry_replays(service: Service) -> None:
    body = ApplicationContent.model_validate(content())
    idempotency_key = key()
    first = await commands.submit_new(service.uow, FIRM, body, idempotency_key)
    again = await commands.submit_new(service.uow, FIRM, body, idempotency_key)
    assert (first.status_code, first.replayed) == (201, False)
    assert (again.status_code, again.replayed) == (201, True)
    assert again.record.id == first.record.id
    assert again.record.status == Status.SUBMITTED.value
    assert await outbox_types(service) == ["application.submitted"]

    other = ApplicationContent.model_validate(content(proposal__local_jobs=7))
    with pytest.raises(ValidationFailed) as refused:
        await commands.submit_new(service.uow, FIRM, other, idempotency_key)
    assert refused.value.extensions["errors"][0]["header"] == "Idempotency-Key"


async def test_a_draft_is_edited_submitted_and_withdrawn(service: Service) -> None:
    draft = await commands.create_draft(service.uow, FIRM, {"firm": {"legal_name": "Acme"}})
    app_id = draft.record.id
    with pytest.raises(Conflict) as refused:
        await commands.withdraw(service.uow, FIRM, app_id, WithdrawRequest(reason="Changed plans."))
    assert refused.value.extensions["current_status"] == "draft"

    await commands.edit_draft(service.uow, FIRM, app_id, replacement=content())
    submitted = await commands.submit_draft(service.uow, FIRM, app_id, key())
    assert submitted.record.status == Status.SUBMITTED.value

    amend = AmendRequest.model_validate({"content": content(), "reason": "More detail."})
    with pytest.raises(Conflict):
        await commands.amend(service.uow, FIRM, app_id, amend)

    withdraw_key = key()
    reason = WithdrawRequest(reason="Changed plans.")
    withdrawn = await commands.withdraw(service.uow, FIRM, app_id, reason, withdraw_key)
    replay = await commands.withdraw(service.uow, FIRM, app_id, reason, withdraw_key)
    assert withdrawn.record.status == Status.WITHDRAWN.value
    assert replay.replayed
    assert [e.event_type for e in replay.timeline][-1] == "application.withdrawn"
    assert await outbox_types(service) == ["application.submitted", "application.withdrawn"]
