"""Review desk.

- Owns: the reviewer registry and the reviewer inbox projection.
- Consumes: ``review.events``, ``approvals.events`` and ``application.withdrawn`` from
  ``applications.events`` (the inbox is built from these alone; Temporal is never scanned).
- Emits: nothing on Kafka. A reviewer's decision becomes the ``decide`` update of the
  application's ``IncentiveApproval`` workflow (workflow id = application id).
- HTTP: port 8002 (the desk API, ``/health``, ``/docs``, ``/asyncapi``). See ``README.md``.
"""
