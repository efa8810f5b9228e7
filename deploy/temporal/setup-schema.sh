#!/bin/sh
# One-shot job of the temporal-schema container (temporalio/admin-tools): installs, then
# upgrades, the Temporal schemas in the persistence and visibility databases. Both steps are
# idempotent, so it runs again harmlessly on every `docker compose up`, and after an image
# upgrade it applies the new schema versions before the server starts.
#
# The databases exist already (created, owned by the temporal role, by deploy/postgres/initdb);
# the password comes from SQL_PASSWORD, which temporal-sql-tool reads from the environment.
set -eu

: "${SQL_PASSWORD:?SQL_PASSWORD must be set}"
host="${POSTGRES_SEEDS:?POSTGRES_SEEDS must be set}"
port="${DB_PORT:-5432}"
user="${POSTGRES_USER:?POSTGRES_USER must be set}"
schemas=/etc/temporal/schema/postgresql/v12

setup() {
    database="$1"
    versioned="$2"
    echo "temporal schema: ${database}"
    temporal-sql-tool --plugin postgres12 --ep "$host" --port "$port" --user "$user" \
        --db "$database" setup-schema -v 0.0
    temporal-sql-tool --plugin postgres12 --ep "$host" --port "$port" --user "$user" \
        --db "$database" update-schema -d "$versioned"
}

setup "${DBNAME:?DBNAME must be set}" "${schemas}/temporal/versioned"
setup "${VISIBILITY_DBNAME:?VISIBILITY_DBNAME must be set}" "${schemas}/visibility/versioned"
echo "temporal schemas up to date"
