"""Message handlers of the review service."""

from __future__ import annotations

from services.kit.consumer import Incoming
from services.kit.logging import get_logger
from services.kit.uow import UnitOfWork

log = get_logger(__name__)


async def record_receipt(incoming: Incoming, uow: UnitOfWork) -> None:
    """Inbox projection input.

    The inbox arrives with the review desk; until then the receipt (the processed-message mark,
    committed by the consumer) is all that is recorded.
    """
    del uow  # nothing to change yet; the consumer commits the processed mark
    log.info("message received", message_type=incoming.envelope.type)
