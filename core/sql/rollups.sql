-- Rollup refreshes at storage level 2 and raising a database's storage level
-- (core/rollups.py, core/schema.py).

-- name: add_pending
INSERT INTO rollup_pending (start, "end", channel_ids) VALUES (%(start)s, %(end)s, %(channel_ids)s) RETURNING id;

-- name: pending
SELECT id, start, "end", channel_ids FROM rollup_pending ORDER BY start, id;

-- name: take_pending
-- Levels 0-1: the pending ranges (all, or those %(ids)s), deleted in the transaction that
-- refreshes them.
DELETE FROM rollup_pending WHERE %(ids)s::bigint[] IS NULL OR id = ANY(%(ids)s)
RETURNING id, start, "end", channel_ids;

-- name: refresh_lock
-- Levels 0-1: one rollup refresh at a time, each statement then seeing every import
-- committed before it (two refreshes of one day never write over each other).
SELECT pg_advisory_xact_lock(%(key)s);

-- name: delete_pending
DELETE FROM rollup_pending WHERE id = ANY(%(ids)s);

-- name: count_pending
SELECT count(*) AS n FROM rollup_pending;

-- name: reading_span
SELECT min(time) AS first, max(time) AS last FROM reading;

-- name: make_hypertable
-- Level 0 -> 1: as migration 0002, moving the readings there already into chunks; without
-- the index on time DESC that migration 0020 drops (the primary key is the only index).
SELECT create_hypertable('reading', by_range('time', INTERVAL '30 days'), migrate_data => true,
                         create_default_indexes => false);

-- name: rollup_views
-- Views over the rollup tables (e.g. tidy.readings_1h), with who may read them: kept across
-- the move to continuous aggregates, which have the same columns.
SELECT DISTINCT v.oid, format('%I.%I', n.nspname, v.relname) AS name, pg_get_viewdef(v.oid) AS definition,
       ARRAY(SELECT format('%I', g.rolname) FROM aclexplode(v.relacl) a JOIN pg_roles g ON g.oid = a.grantee
             WHERE a.privilege_type = 'SELECT' AND a.grantee <> v.relowner) AS readers
FROM pg_depend d
JOIN pg_rewrite r ON r.oid = d.objid
JOIN pg_class v ON v.oid = r.ev_class AND v.relkind = 'v'
JOIN pg_namespace n ON n.oid = v.relnamespace
WHERE d.refobjid IN ('reading_1h'::regclass, 'reading_1d'::regclass) AND d.classid = 'pg_rewrite'::regclass
ORDER BY v.oid;

-- name: drop_rollup_tables
-- Level 0/1 -> 2: the worker-refreshed rollup tables make way for continuous aggregates
-- (the views over them are made again by core.schema.raise_level).
DROP TABLE reading_1h, reading_1d CASCADE;

-- name: set_level
UPDATE storage_info SET level = %(level)s;

-- name: set_migration_file
UPDATE schema_migration SET file = %(file)s WHERE version = %(version)s;

-- name: compression_policy
-- Level 2: the compression policy of `reading` (its compress_after, e.g. '90 days').
SELECT job_id, config->>'compress_after' AS compress_after
FROM timescaledb_information.jobs
WHERE proc_name = 'policy_compression' AND hypertable_schema = 'public' AND hypertable_name = 'reading';

-- name: set_compression_policy
SELECT remove_compression_policy('reading', if_exists => true),
       add_compression_policy('reading', make_interval(days => %(days)s));

-- name: refresh_has_force
SELECT EXISTS (SELECT 1 FROM pg_proc WHERE proname = 'refresh_continuous_aggregate'
               AND 'force' = ANY(proargnames)) AS force;

-- name: refresh_forced
CALL refresh_continuous_aggregate(%(view)s, %(start)s::timestamptz, %(end)s::timestamptz, force => true);

-- name: refresh
CALL refresh_continuous_aggregate(%(view)s, %(start)s::timestamptz, %(end)s::timestamptz);
