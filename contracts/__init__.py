"""Event and command contracts shared by every service and the workflows.

- :mod:`contracts.envelope`: the envelope around every message (ids, times, actor, subject).
- :mod:`contracts.money`: exact money and decimals (strings on the wire, never floats).
- :mod:`contracts.v1`: the version 1 payload models, one module per domain.
- :mod:`contracts.catalog`: message type -> payload model, and the ``encode``/``decode`` codec.
- :mod:`contracts.topics`: the Kafka topics, their keys, partitions, message types and DLQs.
- :mod:`contracts.errors`: contract violations, each with a stable DLQ ``reason_code``.
- :mod:`contracts.conflicts`: the conflict-of-interest rule the desk and the workflow share.
- :mod:`contracts.schemas_tool`: generates ``contracts/schemas/v1`` and checks compatibility.

This package imports nothing else of the project, so any process can depend on it.
"""
