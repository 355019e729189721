#!/bin/sh
# Entry point of the StationManager image: runs the given command (stationmanager worker,
# streamlit run app.py, stationmanager api …) after reading the database password from the
# file that PGPASSWORD_FILE names (a compose secret under /run/secrets), so that the password
# is in no environment file and in no database URL. libpq reads PGPASSWORD when the URL has
# no password.
set -eu
if [ -n "${PGPASSWORD_FILE:-}" ]; then
    if [ ! -r "$PGPASSWORD_FILE" ]; then
        echo "stationmanager: cannot read PGPASSWORD_FILE=$PGPASSWORD_FILE" >&2
        exit 78  # EX_CONFIG
    fi
    PGPASSWORD=$(cat "$PGPASSWORD_FILE")
    export PGPASSWORD
    unset PGPASSWORD_FILE
fi
exec "$@"
