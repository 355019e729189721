"""Admin: database versions, storage level, connections, row counts, migrations; users and
their live sign-in sessions."""

from __future__ import annotations

import streamlit as st

from core import auth, schema, sessions
from core.settings import get_settings
from pages.common import connection, database_url, pool, require_role, show_errors

require_role("admin")
st.title("Admin")

with show_errors(), st.spinner("Reading the database status…"):
    status = schema.status(database_url())

st.subheader("Database")
a, b, c = st.columns(3)
a.metric("PostgreSQL", status["postgresql"])
b.metric("TimescaleDB", status["timescaledb"] or "not installed",
         help=f"edition: {status['timescaledb_edition'] or '–'}; "
              f"available: {status['timescaledb_available'] or 'no'}")
c.metric("Storage level", status["storage_level"], help=status["storage_level_name"])
st.caption(f"{status['database']} · storage level {status['storage_level']}: "
           f"{status['storage_level_name']} (this server offers level {status['offered_level']})")
if status["level_note"]:
    st.info(status["level_note"][0].upper() + status["level_note"][1:] + ".", icon=":material/upgrade:")
if status["rollup_ranges_pending"]:
    st.info(f"{status['rollup_ranges_pending']} imported range(s) wait for their rollups to be refreshed "
            "(the worker catches up within a minute).")

conns = status["connections"]
stats = pool().get_stats()
st.progress(
    min(conns["server_total"] / conns["max_connections"], 1.0),
    text=f"Connections: {conns['server_total']} of {conns['max_connections']} on the server "
         f"({conns['this_database']} to this database; this app's pool holds "
         f"{stats.get('pool_size', 0)}, {stats.get('pool_available', 0)} idle)",
)

if status["pending_migrations"]:
    st.warning("Pending migrations: " + ", ".join(status["pending_migrations"])
               + ". Run `stationmanager db upgrade`.")
else:
    st.success("The schema is up to date.", icon=":material/check_circle:")

rows, people = st.columns([2, 3])
rows.subheader("Rows")
rows.dataframe(
    [{"table": t, "rows": n} for t, n in status["row_counts"].items()],
    hide_index=True, width="content",
    column_config={"rows": st.column_config.NumberColumn(format="localized")},
)

people.subheader("Users")
settings = get_settings()
with show_errors(), connection() as conn:
    users = auth.users(settings.users_file)
    signed_in = {r["username"]: r for r in sessions.live(conn, idle_minutes=settings.session_idle_minutes)}
for u in users:
    live = signed_in.get(u["name"])
    u["sessions"], u["last seen"] = (live["sessions"], live["last_seen_at"]) if live else (0, None)
people.dataframe(users, hide_index=True, width="stretch")
people.caption("Add or change users with `stationmanager users add NAME --role ROLE`; "
               "`stationmanager users logout NAME` signs a user out in every browser.")
