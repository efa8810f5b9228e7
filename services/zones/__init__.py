"""Zones service.

- Owns: The technology-zone catalogue: capacities, holds, allocations, waitlist, releases.
- Consumes: ``zones.commands`` (allocate, release).
- Emits: ``zones.events`` (allocated, waitlisted, released, refused) through its outbox.
- HTTP: port 8004 (``/health``, ``/docs``, ``/asyncapi``).
"""
