-- Catalog queries and fix-ups of core.backup (backup, restore, db copy).

-- name: schema_version
SELECT coalesce(max(version), 0) AS version, array_agg(version ORDER BY version) AS versions
FROM schema_migration;

-- name: tables
-- The tables of the current schema (a hypertable's parent is one; its chunks and a level-2
-- database's continuous aggregates live in TimescaleDB's own schemas).
SELECT c.relname AS name
FROM pg_class c
WHERE c.relnamespace = to_regnamespace(current_schema()) AND c.relkind IN ('r', 'p') AND NOT c.relispartition
ORDER BY c.relname;

-- name: relations
-- What makes a database "not empty" for a restore: any table, view or sequence of its own.
SELECT c.relname AS name
FROM pg_class c
WHERE c.relnamespace = to_regnamespace(current_schema()) AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
ORDER BY c.relname;

-- name: columns
-- A table's stored columns in order (generated columns are computed again, not copied).
SELECT a.attname AS name
FROM pg_attribute a
WHERE a.attrelid = (quote_ident(current_schema()) || '.' || quote_ident(%(table)s))::regclass
  AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
ORDER BY a.attnum;

-- name: key_columns
-- A table's primary key columns in key order (rows are dumped in that order).
SELECT a.attname AS name
FROM pg_index i
CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, n)
JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
WHERE i.indrelid = (quote_ident(current_schema()) || '.' || quote_ident(%(table)s))::regclass AND i.indisprimary
ORDER BY k.n;

-- name: load_constraints
-- Constraints dropped while the given tables load, then added again: foreign keys from or to
-- them (added back, they check every row once, in any load order) and checks marked NOT
-- VALID (they hold for rows written after them only: pg_get_constraintdef keeps NOT VALID).
SELECT src.relname AS table_name, c.conname AS name, pg_get_constraintdef(c.oid) AS definition
FROM pg_constraint c
JOIN pg_class src ON src.oid = c.conrelid
LEFT JOIN pg_class dst ON dst.oid = c.confrelid
WHERE c.connamespace = to_regnamespace(current_schema())
  AND ((c.contype = 'f' AND (src.relname = ANY(%(tables)s) OR dst.relname = ANY(%(tables)s)))
       OR (c.contype = 'c' AND NOT c.convalidated AND src.relname = ANY(%(tables)s)))
ORDER BY c.contype DESC, src.relname, c.conname;

-- name: sequences
-- The sequences behind a table's identity (and serial) columns.
SELECT a.attname AS column_name,
       pg_get_serial_sequence(quote_ident(current_schema()) || '.' || quote_ident(%(table)s), a.attname) AS seq
FROM pg_attribute a
WHERE a.attrelid = (quote_ident(current_schema()) || '.' || quote_ident(%(table)s))::regclass
  AND a.attnum > 0 AND NOT a.attisdropped
  AND pg_get_serial_sequence(quote_ident(current_schema()) || '.' || quote_ident(%(table)s), a.attname) IS NOT NULL;

-- name: originals
-- The original files the database refers to (every source_file row keeps its original).
SELECT sha256, max(size_bytes) AS size_bytes FROM source_file GROUP BY sha256 ORDER BY sha256;

-- name: requeue_importing
-- A backup made while a file was being imported holds it as 'importing' without its
-- readings (they were not committed): it is queued again.
UPDATE source_file SET status = 'queued', started_at = NULL WHERE status = 'importing';

-- name: queued_files
SELECT id FROM source_file WHERE status = 'queued' ORDER BY id;

-- name: expire_exports
-- Export files are not in a backup (they can be built again): finished exports become
-- 'expired' (a new request builds the file again) and unfinished ones 'failed'.
UPDATE export SET status = CASE WHEN status = 'done' THEN 'expired' ELSE 'failed' END,
                  expired_at = CASE WHEN status = 'done' THEN now() ELSE expired_at END,
                  error = CASE WHEN status = 'done' THEN error
                               ELSE 'not finished when the backup was made: request it again' END
WHERE status IN ('done', 'queued', 'running');

-- name: interrupt_source_runs
UPDATE source_run SET status = 'interrupted', finished_at = now(),
                      error = coalesce(error, 'running when the backup was made')
WHERE status = 'running';

-- name: reading_span
SELECT min(time) AS first, max(time) AS last FROM reading;
