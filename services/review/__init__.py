"""Review desk.

- Owns: The reviewer inbox projection and the reviewer registry.
- Consumes: ``review.events`` and ``approvals.events`` (inbox projection).
- Emits: nothing on Kafka: reviewer actions become Temporal updates.
- HTTP: port 8002 (``/health``, ``/docs``, ``/asyncapi``).
"""
