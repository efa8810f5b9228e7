#!/bin/sh
# One-shot job of the temporal-namespace container (temporalio/admin-tools): waits until the
# Temporal cluster reports healthy, then registers the namespace our processes use, unless it
# exists already. Bounded: it gives up (and `docker compose up --wait` fails) after
# ATTEMPTS tries, DELAY seconds apart.
set -eu

address="${TEMPORAL_ADDRESS:?TEMPORAL_ADDRESS must be set}"
namespace="${NAMESPACE:?NAMESPACE must be set}"
retention="${RETENTION:?RETENTION must be set}"
attempts="${ATTEMPTS:-30}"
delay="${DELAY:-2}"

tries=0
until temporal operator cluster health --address "$address" >/dev/null 2>&1; do
    tries=$((tries + 1))
    if [ "$tries" -ge "$attempts" ]; then
        echo "Temporal at ${address} is not healthy after ${attempts} attempts" >&2
        exit 1
    fi
    sleep "$delay"
done

if temporal operator namespace describe --namespace "$namespace" --address "$address" \
    >/dev/null 2>&1; then
    echo "namespace ${namespace} exists"
else
    temporal operator namespace create --namespace "$namespace" --retention "$retention" \
        --address "$address"
    echo "namespace ${namespace} created"
fi
