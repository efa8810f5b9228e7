"""Version 1 of the message payloads.

Within a major version, changes are additive only: new optional fields and new message types.
Removing a field, changing its type or adding a required field needs a ``v2`` package and new
schema files; ``python -m contracts.schemas_tool check`` enforces this.
"""
