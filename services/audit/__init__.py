"""Audit service.

- Owns: the append-only ledger of every event from every topic (hash chain, replay,
  point-in-time state, tamper verification and export arrive with the audit features).
- Consumes: every primary topic (``*.events`` and ``*.commands``; not the ``.dlq`` twins, whose
  records are not envelopes).
- Emits: nothing.
- HTTP: port 8003 (``/health``, ``/docs``, ``/asyncapi``).
"""
