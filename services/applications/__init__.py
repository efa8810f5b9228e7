"""Applications API.

- Owns: application records and drafts, their timelines, the firms' idempotency keys, and the
  firm-facing status projection.
- Consumes: every ``*.events`` topic (status projection).
- Emits: ``applications.events`` (submitted, amended, withdrawn) through its outbox.
- HTTP: port 8001 (``/v1/applications``, ``/health``, ``/docs``, ``/asyncapi``).

See ``README.md`` in this folder.
"""
