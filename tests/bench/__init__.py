"""Throughput benchmarks run by ``make bench`` (``python -m tests.bench``).

Each benchmark starts what it needs from the project's own files (Tansu via
:mod:`services.cli.embedded` on free ports, a fresh PostgreSQL database), checks that every
message arrived exactly once, and reports msgs/s as a ratio to a raw aiokafka baseline measured
in the same run (the audit log's figures: to hashlib SHA-256 over the same leaves, with its tree
checked against the signed root). Figures are printed, never asserted: the machine is small and
noisy.
"""
