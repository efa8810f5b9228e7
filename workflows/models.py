"""Tables of the worker database (the bridge's processed-message marks).

Only the kit tables (outbox, processed messages) so far; the service's own tables arrive with
its features, each with an Alembic revision.
"""

from __future__ import annotations

import sqlalchemy as sa

from services.kit.migrations import service_metadata

#: This service's own tables (the kit tables are added by :func:`metadata`).
TABLES: tuple[sa.Table, ...] = ()


def metadata() -> sa.MetaData:
    """The service's full schema: the Alembic autogenerate target."""
    return service_metadata(*TABLES)
