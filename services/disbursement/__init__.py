"""Disbursement service.

- Owns: Program budgets, award tranche schedules and payouts.
- Consumes: ``disbursement.commands`` (open award, release tranche, cancel award).
- Emits: ``disbursement.events`` (award opened, tranche released/paid/failed, award
  cancelled, budget exhausted) through its outbox.
- HTTP: port 8005 (``/health``, ``/docs``, ``/asyncapi``).
"""
