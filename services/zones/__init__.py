"""Zones service.

- Owns: so far, only the receipt of each command (the processed-message mark). Planned: the
  technology-zone catalogue with capacities, holds, allocations, waitlist and releases.
- Consumes: ``zones.commands`` (allocate, release); nothing publishes them yet.
- Emits: nothing yet. Planned: ``zones.events`` (allocated, waitlisted, released, refused)
  through its outbox.
- HTTP: port 8004 (``/health``, ``/docs``, ``/asyncapi``).
"""
