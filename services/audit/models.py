"""Tables of the audit service database: the transparency log.

- ``audit_leaves``: one row per leaf, ``idx`` 0, 1, 2, ... with no gaps (the single writer
  assigns it). ``leaf`` holds the exact leaf bytes, ``leaf_hash`` its RFC 9162 hash, unique, so
  a record whose leaf bytes are already logged (a redelivery, a republish) is never appended
  again. Topic, partition, offset and arrival time sit beside the leaf, outside the hash;
  ``subject`` is the record key as text, for an application's history;
- ``audit_nodes``: the hash of every complete perfect subtree, the leaves' own hashes being
  level 0, written as the tree grows. Appends cost O(log n) and proofs read a few rows, whatever
  the size of the log. Proofs come only from this table, never from the leaf rows, so a changed
  leaf row cannot change the proofs a verifier checks it with;
- ``audit_checkpoints``: every signed checkpoint, by tree size.

Rows are only ever inserted. Plus the kit's ``outbox`` and ``processed_messages`` (unused here).
"""

from __future__ import annotations

import sqlalchemy as sa

from services.kit.db import UTCDateTime
from services.kit.migrations import service_metadata

_META = sa.MetaData()

LEAVES = sa.Table(
    "audit_leaves",
    _META,
    sa.Column("idx", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("leaf_hash", sa.LargeBinary(32), nullable=False),
    sa.Column("leaf", sa.LargeBinary, nullable=False),
    sa.Column("topic", sa.String(249), nullable=False),
    sa.Column("partition", sa.Integer, nullable=False),
    sa.Column("offset", sa.BigInteger, nullable=False),
    sa.Column("subject", sa.String(200), nullable=True),
    sa.Column("logged_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("leaf_hash", name="uq_audit_leaves_leaf_hash"),
    sa.Index("ix_audit_leaves_subject", "subject", "idx"),
)

NODES = sa.Table(
    "audit_nodes",
    _META,
    sa.Column("level", sa.SmallInteger, primary_key=True, autoincrement=False),
    sa.Column("idx", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("hash", sa.LargeBinary(32), nullable=False),
)

CHECKPOINTS = sa.Table(
    "audit_checkpoints",
    _META,
    sa.Column("tree_size", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("root", sa.LargeBinary(32), nullable=False),
    sa.Column("note", sa.Text, nullable=False),
    sa.Column("signed_at", UTCDateTime, nullable=False),
)

#: This service's own tables (the kit tables are added by :func:`metadata`).
TABLES: tuple[sa.Table, ...] = (LEAVES, NODES, CHECKPOINTS)


def metadata() -> sa.MetaData:
    """The service's full schema: the Alembic autogenerate target."""
    return service_metadata(*TABLES)
