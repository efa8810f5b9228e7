"""Eligibility service.

- Owns: Versioned rule sets and eligibility decisions.
- Consumes: ``applications.events`` (submitted, amended).
- Emits: ``eligibility.events`` (assessed) through its outbox.
- HTTP: port 8006 (``/health``, ``/docs``, ``/asyncapi``).
"""
