-- Sources, what they hold, and their runs (core.sources).

-- name: list_sources
SELECT s.*, st.name AS station,
       r.id AS last_run_id, r.status AS last_status, r.started_at AS last_run_at,
       r.error_class AS last_error_class, r.error AS last_error
FROM source s
LEFT JOIN station st ON st.id = s.station_id
LEFT JOIN LATERAL (
    SELECT * FROM source_run WHERE source_id = s.id ORDER BY id DESC LIMIT 1
) r ON true
ORDER BY s.name;

-- name: source_by_name
SELECT s.*, st.name AS station FROM source s LEFT JOIN station st ON st.id = s.station_id
WHERE s.name = %(name)s;

-- name: source_by_id
SELECT s.*, st.name AS station FROM source s LEFT JOIN station st ON st.id = s.station_id
WHERE s.id = %(id)s;

-- name: insert_source
INSERT INTO source (name, kind, url, credentials, station_id, include, exclude, every_minutes, since,
                    after_fetch, move_to, max_files, max_bytes, timeout_s, connections, options, enabled)
VALUES (%(name)s, %(kind)s, %(url)s, %(credentials)s, %(station_id)s, %(include)s, %(exclude)s,
        %(every_minutes)s, %(since)s, %(after_fetch)s, %(move_to)s, %(max_files)s, %(max_bytes)s,
        %(timeout_s)s, %(connections)s, %(options)s, %(enabled)s)
RETURNING id;

-- name: update_source
-- A changed URL forgets the accepted host key: a new host must be trusted again.
UPDATE source SET name = %(name)s, kind = %(kind)s, url = %(url)s, credentials = %(credentials)s,
    station_id = %(station_id)s, include = %(include)s, exclude = %(exclude)s,
    every_minutes = %(every_minutes)s, since = %(since)s, after_fetch = %(after_fetch)s,
    move_to = %(move_to)s, max_files = %(max_files)s, max_bytes = %(max_bytes)s,
    timeout_s = %(timeout_s)s, connections = %(connections)s, options = %(options)s,
    enabled = %(enabled)s, updated_at = now(),
    host_key = CASE WHEN url = %(url)s THEN host_key END,
    pending_host_key = CASE WHEN url = %(url)s THEN pending_host_key END,
    blocked = CASE WHEN url = %(url)s THEN blocked END
WHERE id = %(id)s;

-- name: delete_source
DELETE FROM source WHERE name = %(name)s RETURNING id;

-- name: set_pending_host_key
UPDATE source SET pending_host_key = %(key)s, updated_at = now() WHERE id = %(id)s;

-- name: block_source
UPDATE source SET pending_host_key = %(key)s, blocked = %(reason)s, updated_at = now() WHERE id = %(id)s;

-- name: trust_host_key
UPDATE source SET host_key = %(key)s, pending_host_key = NULL, blocked = NULL, updated_at = now()
WHERE id = %(id)s;

-- name: claim_due_sources
-- Enabled sources whose interval has passed since their last run was queued; marks them queued.
UPDATE source SET queued_at = %(now)s
WHERE enabled AND blocked IS NULL
  AND (queued_at IS NULL OR queued_at + make_interval(mins => every_minutes) <= %(now)s)
RETURNING id, name;

-- name: remote_files
SELECT * FROM source_remote_file WHERE source_id = %(source_id)s;

-- name: mark_listed
INSERT INTO source_remote_file (source_id, path, listed_size, listed_mtime, listed_at)
VALUES (%(source_id)s, %(path)s, %(size)s, %(mtime)s, now())
ON CONFLICT (source_id, path) DO UPDATE
SET listed_size = EXCLUDED.listed_size, listed_mtime = EXCLUDED.listed_mtime, listed_at = now();

-- name: mark_fetched
UPDATE source_remote_file
SET fetched_size = %(size)s, fetched_mtime = %(mtime)s, fetched_at = now(), sha256 = %(sha256)s,
    source_file_id = %(source_file_id)s
WHERE source_id = %(source_id)s AND path = %(path)s;

-- name: start_run
-- Earlier runs still 'running' were cut short (the caller holds the source's lock).
WITH cut AS (
    UPDATE source_run SET status = 'interrupted', finished_at = clock_timestamp(),
        error = coalesce(error, 'the run stopped before it ended (the process was killed?)')
    WHERE source_id = %(source_id)s AND status = 'running'
)
INSERT INTO source_run (source_id, trigger) VALUES (%(source_id)s, %(trigger)s) RETURNING id;

-- name: finish_run
UPDATE source_run SET status = %(status)s, finished_at = clock_timestamp(), n_listed = %(n_listed)s,
    n_new = %(n_new)s, n_waiting = %(n_waiting)s, n_fetched = %(n_fetched)s, n_failed = %(n_failed)s,
    bytes = %(bytes)s, error_class = %(error_class)s, error = %(error)s, file_ids = %(file_ids)s
WHERE id = %(id)s
RETURNING *, extract(epoch FROM finished_at - started_at) AS duration_s;

-- name: runs
SELECT r.*, extract(epoch FROM coalesce(r.finished_at, clock_timestamp()) - r.started_at) AS duration_s
FROM source_run r WHERE r.source_id = %(source_id)s ORDER BY r.id DESC LIMIT %(limit)s;

-- name: run_by_id
SELECT r.*, extract(epoch FROM coalesce(r.finished_at, clock_timestamp()) - r.started_at) AS duration_s
FROM source_run r WHERE r.id = %(id)s;

-- name: finished_run_after
SELECT r.*, extract(epoch FROM r.finished_at - r.started_at) AS duration_s
FROM source_run r WHERE r.source_id = %(source_id)s AND r.id > %(after)s AND r.status <> 'running'
ORDER BY r.id LIMIT 1;

-- name: last_run_id
SELECT coalesce(max(id), 0) AS id FROM source_run WHERE source_id = %(source_id)s;

-- name: files_without_import_job
-- Files this source received that are still queued with no import job waiting or running:
-- the process that received them stopped before it queued their import.
SELECT DISTINCT f.id
FROM source_remote_file rf
JOIN source_file f ON f.id = rf.source_file_id
WHERE rf.source_id = %(source_id)s AND f.status = 'queued'
  AND NOT EXISTS (
      SELECT 1 FROM procrastinate_jobs j
      WHERE j.task_name = 'sm:import_file'
        AND ((j.args->>'source_file_id')::bigint = f.id OR j.args->'source_file_ids' @> to_jsonb(f.id))
        AND j.status IN ('todo', 'doing'));

-- name: archive_credentials
-- The credentials names of the sources a received file was fetched from (for its archive password).
SELECT DISTINCT s.name AS source, s.credentials
FROM source_remote_file rf
JOIN source s ON s.id = rf.source_id
WHERE rf.source_file_id = %(source_file_id)s AND s.credentials IS NOT NULL
ORDER BY s.name;

-- name: test_result
-- A source's test queued as job %(job_id)s (core.source_admin.queue_test): its result, once
-- the worker recorded it in the audit log, and the job's status while it waits or runs.
SELECT (SELECT a.details FROM audit a
         WHERE a.entity = 'source' AND a.entity_id = %(source_id)s AND a.action = 'test'
           AND a.details->>'job_id' = %(job_id)s::text
         ORDER BY a.id DESC LIMIT 1) AS result,
       (SELECT j.status::text FROM procrastinate_jobs j WHERE j.id = %(job_id)s) AS job_status;
