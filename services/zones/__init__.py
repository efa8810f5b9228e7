"""Zones service.

- Owns: The technology-zone catalogue: capacities, holds, allocations, waitlist, releases.
- Consumes: ``zones.commands`` (hold, confirm, allocate, release).
- Emits: ``zones.events`` (held, allocated, waitlisted, hold expired, released, refused)
  through its outbox.
- HTTP: port 8004 (admin API under ``/v1/zones``, ``/health``, ``/docs``, ``/asyncapi``).
"""
