"""Eligibility service.

- Owns: versioned rule sets (``rulesets/*.toml``, CEL expressions) and eligibility decisions.
- Consumes: ``applications.events`` (submitted, amended).
- Emits: ``eligibility.events`` (assessed) through its outbox.
- HTTP: port 8006 (``/health``, ``/docs``, ``/asyncapi``).

See ``README.md`` next to this file for the rule-set format and the decision semantics.
"""
