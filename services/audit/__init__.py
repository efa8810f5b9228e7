"""Audit service: the transparency log (see README.md).

- Owns: the append-only log of every record from every topic: RFC 9162 Merkle tree, signed
  C2SP checkpoints (Ed25519), inclusion and consistency proofs.
- Consumes: every topic of the registry and every ``.dlq`` twin, raw (nothing is decoded).
- Emits: nothing.
- HTTP: port 8003 (the read-only audit API, ``/health``, ``/docs``, ``/asyncapi``).
"""
