"""The simulated bank rail: a payment service of its own, for the embedded platform and tests.

- Owns: its payments, in its own SQLite file (``<var_dir>/rail.db``).
- HTTP: port 8010: ``POST /v1/payments`` (with ``Idempotency-Key``), ``POST /v1/payment-batches``
  (a key per payment), ``GET /v1/payments/{key}``,
  ``GET /v1/payments?since=...``, and in dev mode ``POST /v1/control`` to misbehave on purpose.
"""
