-- Named queries of core.reader_roles and core.budget: read-only roles that see only the
-- tidy views (migration 0018), and the connection budget.
-- Values only as %(name)s parameters; identifiers as {name} through psycopg.sql.Identifier.

-- name: readers
-- The reader roles of this database: the roles granted USAGE on the tidy schema (its owner aside).
SELECT r.rolname AS name, r.rolconnlimit AS connections
FROM pg_namespace n
CROSS JOIN LATERAL aclexplode(n.nspacl) a
JOIN pg_roles r ON r.oid = a.grantee
WHERE n.nspname = 'tidy' AND a.privilege_type = 'USAGE' AND a.grantee <> n.nspowner
ORDER BY r.rolname;

-- name: server
-- What the server allows: its max_connections, the connections it keeps for superusers (and,
-- from PostgreSQL 16, for roles with pg_use_reserved_connections), the client connections now.
SELECT current_setting('max_connections')::int AS max_connections,
       current_setting('superuser_reserved_connections')::int
         + coalesce(current_setting('reserved_connections', true)::int, 0) AS reserved,
       (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')::int AS in_use;

-- name: role
SELECT r.oid, r.rolname, r.rolsuper, r.rolcreaterole, r.rolcreatedb, r.rolreplication, r.rolbypassrls,
       r.rolcanlogin, r.rolconnlimit, shobj_description(r.oid, 'pg_authid') AS comment,
       (SELECT s.setconfig FROM pg_db_role_setting s WHERE s.setrole = r.oid AND s.setdatabase = 0) AS settings,
       r.rolname = current_user AS is_current
FROM pg_roles r WHERE r.rolname = %(name)s;

-- name: me
SELECT current_user AS name, current_database() AS database,
       (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) AS superuser;

-- name: create_role
CREATE ROLE {name} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOREPLICATION NOBYPASSRLS
    CONNECTION LIMIT {connections} PASSWORD {password};

-- name: alter_role
ALTER ROLE {name} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOREPLICATION NOBYPASSRLS
    CONNECTION LIMIT {connections};

-- name: set_password
ALTER ROLE {name} PASSWORD {password};

-- name: comment_role
COMMENT ON ROLE {name} IS {comment};

-- name: set_role_setting
ALTER ROLE {name} SET {setting} = {value};

-- name: lock_down_database
-- What every role may do here by default, taken from PUBLIC: temporary tables, and the
-- public schema (USAGE, and CREATE on PostgreSQL 14 and older), so a reader role can call
-- none of the functions there either. The owner of the tidy views (the role that ran the
-- migrations) keeps USAGE on the public schema explicitly; owners keep their rights anyway.
REVOKE TEMPORARY ON DATABASE {database} FROM PUBLIC;
REVOKE ALL ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO {owner};
GRANT CONNECT ON DATABASE {database} TO {name};
GRANT USAGE ON SCHEMA tidy TO {name};
GRANT SELECT ON ALL TABLES IN SCHEMA tidy TO {name};

-- name: tidy_owner
SELECT pg_get_userbyid(nspowner) AS owner FROM pg_namespace WHERE nspname = 'tidy';

-- name: sessions_of
SELECT pg_terminate_backend(pid) AS ended FROM pg_stat_activity
WHERE usename = %(name)s AND datname = current_database() AND pid <> pg_backend_pid();

-- name: drop_owned
DROP OWNED BY {name};

-- name: drop_role
DROP ROLE {name};

-- name: reader_sessions
-- Sessions of this database's reader roles that are running a statement or idle inside a
-- transaction, how long they have been at it, and the role's own limits (its session
-- defaults, as `ensure` stored them: milliseconds).
SELECT a.pid, a.usename AS name, a.state,
       extract(epoch FROM now() - a.query_start) * 1000 AS running_ms,
       extract(epoch FROM now() - a.state_change) * 1000 AS idle_ms,
       (SELECT split_part(c, '=', 2) FROM unnest(s.setconfig) c WHERE c LIKE 'statement_timeout=%%') AS timeout,
       (SELECT split_part(c, '=', 2) FROM unnest(s.setconfig) c
         WHERE c LIKE 'idle\_in\_transaction\_session\_timeout=%%') AS idle_timeout
FROM pg_stat_activity a
JOIN pg_roles r ON r.rolname = a.usename
JOIN pg_db_role_setting s ON s.setrole = r.oid AND s.setdatabase = 0
WHERE a.datname = current_database() AND a.pid <> pg_backend_pid()
  AND a.state IN ('active', 'idle in transaction', 'idle in transaction (aborted)')
  AND shobj_description(r.oid, 'pg_authid') = %(mark)s;

-- name: cancel
SELECT pg_cancel_backend(%(pid)s) AS done;

-- name: terminate
SELECT pg_terminate_backend(%(pid)s) AS done;
