"""The transparency log's format and proofs, with no I/O: what any verifier needs.

- :mod:`~services.audit.domain.leaves`: a Kafka record's leaf bytes (RFC 8785 canonical JSON);
- :mod:`~services.audit.domain.merkle`: the RFC 9162 section 2.1 tree hash, inclusion and
  consistency proofs (generation and verification), and the incremental frontier the single
  writer appends with;
- :mod:`~services.audit.domain.checkpoint`: C2SP ``tlog-checkpoint`` signed notes (Ed25519).
"""
