#!/bin/sh
# Entry point of the StationManager image: runs the given command (stationmanager worker,
# streamlit run app.py, stationmanager api …) after turning the database password of the
# file that PGPASSWORD_FILE names (a compose secret under /run/secrets) into the libpq
# password file that PGPASSFILE names, so that the password is in no environment file, no
# database URL and no process's environment. Processes started later in the container
# (health checks, `docker compose exec`) find it through PGPASSFILE, which compose sets for
# the whole container.
set -eu
if [ -n "${PGPASSWORD_FILE:-}" ]; then
    if [ ! -r "$PGPASSWORD_FILE" ]; then
        echo "stationmanager: cannot read PGPASSWORD_FILE=$PGPASSWORD_FILE" >&2
        exit 78  # EX_CONFIG
    fi
    : "${PGPASSFILE:=/tmp/stationmanager.pgpass}"
    export PGPASSFILE
    # one line, any host, port, database and user; libpq wants ':' and '\' escaped
    password=$(head -n 1 "$PGPASSWORD_FILE" | sed -e 's/[\\:]/\\&/g')
    (umask 077 && printf '*:*:*:*:%s\n' "$password" > "$PGPASSFILE")
    unset password PGPASSWORD_FILE
fi
exec "$@"
