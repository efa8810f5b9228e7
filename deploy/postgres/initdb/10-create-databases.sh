#!/usr/bin/env bash
# Runs once, when the postgres container initialises an empty data volume
# (files in /docker-entrypoint-initdb.d are ignored on later starts).
#
# Creates two login roles and the databases they own:
#   incentives -> one database per service and one for the worker's bridge (each process only
#                 ever touches its own)
#   temporal   -> temporal, temporal_visibility (schemas are installed by the temporal-schema job)
# Passwords come from the container environment (see docker-compose.yml and deploy/env.example)
# and reach SQL as psql variables, so they are quoted by psql, never spliced into the text.
set -euo pipefail

: "${INCENTIVES_DB_PASSWORD:?INCENTIVES_DB_PASSWORD must be set}"
: "${TEMPORAL_DB_PASSWORD:?TEMPORAL_DB_PASSWORD must be set}"

psql --no-psqlrc -v ON_ERROR_STOP=1 \
    --username "${POSTGRES_USER:-postgres}" --dbname "${POSTGRES_DB:-postgres}" \
    -v incentives_password="${INCENTIVES_DB_PASSWORD}" \
    -v temporal_password="${TEMPORAL_DB_PASSWORD}" <<'SQL'
CREATE ROLE incentives LOGIN PASSWORD :'incentives_password';
CREATE ROLE temporal LOGIN PASSWORD :'temporal_password';

-- One database per service, and the worker's (the bridge's processed marks and outbox).
CREATE DATABASE applications OWNER incentives;
CREATE DATABASE eligibility OWNER incentives;
CREATE DATABASE zones OWNER incentives;
CREATE DATABASE disbursement OWNER incentives;
CREATE DATABASE review OWNER incentives;
CREATE DATABASE audit OWNER incentives;
CREATE DATABASE worker OWNER incentives;

-- Temporal persistence and visibility stores.
CREATE DATABASE temporal OWNER temporal;
CREATE DATABASE temporal_visibility OWNER temporal;

-- Nobody but the owner (and superusers) may connect to a database.
REVOKE CONNECT, TEMPORARY ON DATABASE
    applications, eligibility, zones, disbursement, review, audit, worker,
    temporal, temporal_visibility
    FROM PUBLIC;
SQL
