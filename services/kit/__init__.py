"""The runtime kit shared by every service.

Settings, database engine and unit of work, transactional outbox and relay, idempotent Kafka
consumer (final errors dead-lettered, transient ones waited out), structured logging, JWT auth,
RFC 9457 problem responses, health checks and the service runner. Importing any module here
does no work: engines, brokers and clients are created by the service's composition root
(``create_app``).
"""
