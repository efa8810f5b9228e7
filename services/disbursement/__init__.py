"""Disbursement service.

- Owns: so far, only the receipt of each command (the processed-message mark). Planned:
  program budgets, award tranche schedules and payouts.
- Consumes: ``disbursement.commands`` (open award, release tranche, cancel award); nothing
  publishes them yet.
- Emits: nothing yet. Planned: ``disbursement.events`` (award opened, tranche
  released/paid/failed, award cancelled, budget exhausted) through its outbox.
- HTTP: port 8005 (``/health``, ``/docs``, ``/asyncapi``).
"""
