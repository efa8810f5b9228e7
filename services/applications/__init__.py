"""Applications API.

- Owns: Application records and drafts, and the firm-facing status projection.
- Consumes: every ``*.events`` topic (status projection).
- Emits: ``applications.events`` (submitted, amended, withdrawn) through its outbox.
- HTTP: port 8001 (``/health``, ``/docs``, ``/asyncapi``).
"""
