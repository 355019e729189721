-- Named queries of StationManager, loaded once by core.db.queries().
-- Values only as %(name)s parameters; identifiers only through psycopg.sql.Identifier.

-- name: insert_audit
INSERT INTO audit (actor, action, entity, entity_id, details)
VALUES (%(actor)s, %(action)s, %(entity)s, %(entity_id)s, %(details)s::jsonb);

-- name: station_by_name
SELECT * FROM station WHERE name = %(name)s;

-- name: insert_station
INSERT INTO station (name, latitude, longitude, elevation_m, kind, notes)
VALUES (%(name)s, %(latitude)s, %(longitude)s, %(elevation_m)s, %(kind)s, %(notes)s)
ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name
RETURNING *;

-- name: stations
SELECT * FROM station ORDER BY name;

-- name: loggers_of
-- The configurations of the logger that wrote a file (by serial; a file without a serial,
-- or a logger recorded without one, matches any), oldest first.
SELECT * FROM logger
WHERE station_id = %(station_id)s
  AND (serial = %(serial)s OR %(serial)s = '' OR serial = '')
ORDER BY valid_from NULLS FIRST, id;

-- name: insert_logger
INSERT INTO logger (station_id, oem, model, serial, utc_offset_minutes, timestamp_is_end, interval_s)
VALUES (%(station_id)s, %(oem)s, %(model)s, %(serial)s, %(utc_offset_minutes)s,
        %(timestamp_is_end)s, %(interval_s)s)
RETURNING *;

-- name: upsert_channel
INSERT INTO channel (station_id, column_name, statistic, unit)
VALUES (%(station_id)s, %(column_name)s, %(statistic)s, %(unit)s)
ON CONFLICT (station_id, column_name) DO UPDATE SET column_name = EXCLUDED.column_name
RETURNING id;

-- name: upsert_channels
-- The channels of a file's columns (distinct names), created when missing, in one statement.
INSERT INTO channel (station_id, column_name, statistic, unit)
SELECT %(station_id)s, c.column_name, c.statistic, c.unit
FROM unnest(%(column_names)s::text[], %(statistics)s::text[], %(units)s::text[]) AS c (column_name, statistic, unit)
ON CONFLICT (station_id, column_name) DO UPDATE SET column_name = EXCLUDED.column_name
RETURNING id, column_name;

-- name: channels_of_station
SELECT c.*, mp.name AS point_name, mp.measurement_type, mp.height_m, mp.orientation_deg
FROM channel c LEFT JOIN measurement_point mp ON mp.id = c.measurement_point_id
WHERE c.station_id = %(station_id)s
ORDER BY mp.measurement_type NULLS LAST, mp.height_m DESC NULLS LAST, c.column_name;

-- name: live_file_by_sha
SELECT * FROM source_file WHERE sha256 = %(sha256)s AND status <> 'duplicate';

-- name: insert_source_file
INSERT INTO source_file (sha256, original_name, size_bytes, origin, received_by, station_id,
                         status, duplicate_of, parent_id)
VALUES (%(sha256)s, %(original_name)s, %(size_bytes)s, %(origin)s, %(received_by)s,
        %(station_id)s, %(status)s, %(duplicate_of)s, %(parent_id)s)
RETURNING *;

-- name: claim_source_file
-- Take a file for import. Row lock: two workers never import one file at once.
UPDATE source_file
SET status = 'importing', attempts = attempts + 1, started_at = clock_timestamp(),
    error = NULL, error_line = NULL, warnings = '{}'
WHERE id = %(id)s AND status IN ('queued', 'importing', 'failed')
RETURNING *;

-- name: touch_source_file
-- A write that changes nothing (core.ingest.Batch: its commit waits for the WAL before it to
-- reach the disk).
UPDATE source_file SET status = status WHERE id = %(id)s;

-- name: lock_file_import
-- Session lock held while a file is imported (released by unlock_file_import, or when the
-- session ends: a killed worker's file can be taken again). Waits while another session
-- holds it: a job never holds two, so two jobs cannot wait for each other.
SELECT pg_advisory_lock(%(key)s::int, %(id)s::int);

-- name: unlock_file_import
SELECT pg_advisory_unlock(%(key)s::int, %(id)s::int);

-- name: delete_file_readings
-- A file imported again: the readings its earlier import left (still its own, not replaced by a
-- later file's) go first, since its clock or columns may read differently now.
DELETE FROM reading
WHERE source_file_id = %(id)s AND time BETWEEN %(first)s AND %(last)s
  AND channel_id = ANY(ARRAY(SELECT id FROM channel));

-- name: source_file_imported
-- Returns the row as source_file reads it (the import's result, without a query after it).
UPDATE source_file
SET status = 'imported', format = %(format)s, n_rows = %(n_rows)s, n_readings = %(n_readings)s,
    n_changed = %(n_changed)s, first_time = %(first_time)s, last_time = %(last_time)s,
    warnings = %(warnings)s,
    finished_at = clock_timestamp()
WHERE id = %(id)s
RETURNING *, (SELECT s.name FROM station s WHERE s.id = source_file.station_id) AS station;

-- name: source_file_failed
UPDATE source_file
SET status = 'failed', format = coalesce(%(format)s, format), error = %(error)s,
    error_line = %(error_line)s, n_readings = 0, finished_at = clock_timestamp()
WHERE id = %(id)s;

-- name: source_file_job_ended
-- Its import job ended in an unexpected error: the file is failed with the reason, or queued
-- again when the job queue retries it. Only a file still being imported is touched.
UPDATE source_file
SET status = CASE WHEN %(retrying)s THEN 'queued' ELSE 'failed' END, error = %(error)s,
    error_line = NULL, n_readings = 0, finished_at = clock_timestamp()
WHERE id = %(id)s AND status = 'importing'
RETURNING id, status;

-- name: import_files_without_job
-- Files still queued or importing whose latest import job has ended (failed, cancelled,
-- aborted, or even succeeded): no job will ever finish them.
SELECT f.id, j.status AS job_status, j.id AS job_id
FROM source_file f
JOIN LATERAL (
    SELECT id, status::text AS status FROM procrastinate_jobs
    WHERE task_name = 'sm:import_file'
      AND ((args->>'source_file_id')::bigint = f.id OR args->'source_file_ids' @> to_jsonb(f.id))
    ORDER BY id DESC LIMIT 1
) j ON true
WHERE f.id = ANY(%(ids)s) AND f.status IN ('queued', 'importing')
  AND j.status NOT IN ('todo', 'doing', 'aborting');

-- name: files_to_batch
-- Received files to group into import jobs (core.jobs.import_batches), in the order received.
SELECT id, station_id, size_bytes, status FROM source_file WHERE id = ANY(%(ids)s) ORDER BY id;

-- name: file_tree_ids
-- The files and the members unpacked from them, at any depth.
WITH RECURSIVE tree AS (
    SELECT id FROM source_file WHERE id = ANY(%(ids)s)
    UNION
    SELECT f.id FROM source_file f JOIN tree t ON f.parent_id = t.id
)
SELECT id FROM tree;

-- name: source_file_job_gone
UPDATE source_file
SET status = 'failed', error = %(error)s, error_line = NULL, n_readings = 0,
    finished_at = clock_timestamp()
WHERE id = %(id)s AND status IN ('queued', 'importing')
RETURNING id;

-- name: source_file
SELECT f.*, s.name AS station FROM source_file f LEFT JOIN station s ON s.id = f.station_id
WHERE f.id = %(id)s;

-- name: source_files_by_ids
-- The files and, for archives, their members (at any depth).
WITH RECURSIVE tree AS (
    SELECT id FROM source_file WHERE id = ANY(%(ids)s)
    UNION
    SELECT f.id FROM source_file f JOIN tree t ON f.parent_id = t.id
)
SELECT f.*, s.name AS station FROM source_file f LEFT JOIN station s ON s.id = f.station_id
WHERE f.id IN (SELECT id FROM tree) ORDER BY f.id;

-- name: overlap_exists
-- Does any reading already exist for these channels in [first, last]?
SELECT EXISTS (
    SELECT 1 FROM reading
    WHERE channel_id = ANY(%(channel_ids)s) AND time >= %(first)s AND time <= %(last)s
) AS overlap;

-- name: create_staging
CREATE TEMPORARY TABLE IF NOT EXISTS reading_staging (LIKE reading) ON COMMIT DELETE ROWS;

-- name: merge_staging
-- Later imports win; count rows whose value really changed.
WITH merged AS (
    INSERT INTO reading (channel_id, time, value, source_file_id)
    SELECT channel_id, time, value, source_file_id FROM reading_staging
    ON CONFLICT (channel_id, time) DO UPDATE
        SET value = EXCLUDED.value, source_file_id = EXCLUDED.source_file_id
        WHERE reading.value IS DISTINCT FROM EXCLUDED.value
    RETURNING (xmax <> 0) AS updated
)
SELECT count(*) FILTER (WHERE updated) AS changed FROM merged;

-- name: truncate_staging
TRUNCATE reading_staging;

-- name: clear_1h
-- Levels 0-1 (core.rollups._refresh_tables): the hourly rollups of the channels in the
-- ranges [starts[i], ends[i]). The rows are found a range at a time through the key and
-- deleted by their ctid: a join of the ranges with the table could be planned as a scan of
-- the whole table once its statistics change (seen in a benchmark: from milliseconds to
-- seconds a batch).
DELETE FROM reading_1h
WHERE ctid = ANY(ARRAY(
    SELECT h.ctid FROM unnest(%(starts)s::timestamptz[], %(ends)s::timestamptz[]) AS r(s, e)
    CROSS JOIN LATERAL (SELECT ctid FROM reading_1h
                        WHERE channel_id = ANY(%(channel_ids)s) AND bucket >= r.s AND bucket < r.e
                        OFFSET 0) h));

-- name: all_channel_ids
SELECT array_agg(id) AS ids FROM channel;

-- name: refresh_1h
-- The hours of the ranges (whole hours, disjoint) from the readings. Sums in time order
-- (ORDER BY in the aggregates): a bucket gets the same bits whatever the plan, the number of
-- channels or the ranges refreshed at once (one file or a batch), and as
-- core.rollups.aggregate computes them while a file is read.
INSERT INTO reading_1h (channel_id, bucket, n, mean, min, max, sumsq)
SELECT d.channel_id, date_bin(INTERVAL '1 hour', d.time, TIMESTAMPTZ '2000-01-01 00:00+00'),
       count(d.value), avg(d.value ORDER BY d.time), min(d.value), max(d.value),
       sum(d.value * d.value ORDER BY d.time)
FROM unnest(%(starts)s::timestamptz[], %(ends)s::timestamptz[]) AS r(s, e)
-- a range at a time, through the (channel, time) key (OFFSET 0: not joined as a whole)
CROSS JOIN LATERAL (SELECT channel_id, time, value FROM reading
                    WHERE channel_id = ANY(%(channel_ids)s) AND time >= r.s AND time < r.e OFFSET 0) d
GROUP BY 1, 2
ORDER BY 1, 2;

-- name: clear_1d
-- As clear_1h.
DELETE FROM reading_1d
WHERE ctid = ANY(ARRAY(
    SELECT h.ctid FROM unnest(%(starts)s::timestamptz[], %(ends)s::timestamptz[]) AS r(s, e)
    CROSS JOIN LATERAL (SELECT ctid FROM reading_1d
                        WHERE channel_id = ANY(%(channel_ids)s) AND bucket >= r.s AND bucket < r.e
                        OFFSET 0) h));

-- name: refresh_1d
-- The days of the ranges (whole days, disjoint) from the hours.
INSERT INTO reading_1d (channel_id, bucket, n, mean, min, max, sumsq)
SELECT h.channel_id, date_bin(INTERVAL '1 day', h.bucket, TIMESTAMPTZ '2000-01-01 00:00+00'),
       sum(h.n), sum(h.mean * h.n ORDER BY h.bucket) / nullif(sum(h.n), 0), min(h.min), max(h.max),
       sum(h.sumsq ORDER BY h.bucket)
FROM unnest(%(starts)s::timestamptz[], %(ends)s::timestamptz[]) AS r(s, e)
CROSS JOIN LATERAL (SELECT channel_id, bucket, n, mean, min, max, sumsq FROM reading_1h
                    WHERE channel_id = ANY(%(channel_ids)s) AND bucket >= r.s AND bucket < r.e OFFSET 0) h
GROUP BY 1, 2
ORDER BY 1, 2;

-- name: file_status_counts
WITH RECURSIVE tree AS (
    SELECT id FROM source_file WHERE id = ANY(%(ids)s)
    UNION
    SELECT f.id FROM source_file f JOIN tree t ON f.parent_id = t.id
)
SELECT status, count(*) AS n FROM source_file
WHERE id IN (SELECT id FROM tree) GROUP BY status;

-- name: overview
-- One row per station, as of %(now)s (nothing at or after it counts): its last reading
-- (per channel: its extent, or an index probe when it ends at or after now), its logger
-- interval, file counts (all time, and received in
-- [%(files_since)s, now)), and the parts of its health that core.stations.overview turns
-- into recovery and a status. Recovery counts come from the daily rollups over the window
-- [%(win_start)s, %(win_end)s) of whole UTC days; readings under live flags are counted in
-- reading_1d for the whole days a flag covers and in the raw readings only at its edges.
WITH chan AS (
    -- each channel's first and last reading before now: its extent (core.extents) when that
    -- ends before now (the usual case), else an index probe; none when it starts at or after now
    SELECT c.id, c.station_id, c.column_name, c.mapped,
           CASE WHEN e.last_time < %(now)s THEN e.last_time
                WHEN e.first_time < %(now)s THEN
                    (SELECT r.time FROM reading r WHERE r.channel_id = c.id AND r.time < %(now)s
                      ORDER BY r.time DESC LIMIT 1) END AS last_time,
           CASE WHEN e.first_time < %(now)s THEN e.first_time END AS first_time
    FROM channel c LEFT JOIN channel_extent e ON e.channel_id = c.id
), base AS (
    SELECT s.id, s.name, s.latitude, s.longitude, s.elevation_m,
           (SELECT max(ch.last_time) FROM chan ch WHERE ch.station_id = s.id) AS last_reading,
           (SELECT min(ch.first_time) FROM chan ch WHERE ch.station_id = s.id AND ch.mapped) AS first_reading,
           (SELECT count(*) FROM chan ch WHERE ch.station_id = s.id) AS channels,
           (SELECT count(*) FROM chan ch WHERE ch.station_id = s.id AND ch.mapped) AS mapped_channels,
           (SELECT l.interval_s FROM logger l WHERE l.station_id = s.id
             ORDER BY (coalesce(l.valid_from, '-infinity') <= %(now)s
                       AND coalesce(l.valid_to, 'infinity') > %(now)s) DESC,
                      l.valid_from DESC NULLS LAST, l.id DESC
             LIMIT 1) AS interval_s
    FROM station s
), files AS (
    SELECT f.station_id,
           count(*) FILTER (WHERE f.status = 'imported') AS files_imported,
           count(*) FILTER (WHERE f.status = 'failed') AS files_failed,
           count(*) FILTER (WHERE f.status IN ('queued', 'importing')) AS files_pending,
           max(f.received_at) AS last_file_received,
           count(*) FILTER (WHERE f.received_at >= %(files_since)s AND f.received_at < %(now)s
                              AND f.status <> 'unpacked') AS files_7d,
           count(*) FILTER (WHERE f.received_at >= %(files_since)s AND f.received_at < %(now)s
                              AND f.status = 'failed') AS failed_7d
    FROM source_file f
    WHERE f.station_id IS NOT NULL
    GROUP BY f.station_id
), rollup AS (
    SELECT ch.station_id, sum(d.n) AS readings_30d
    FROM chan ch JOIN reading_1d d ON d.channel_id = ch.id
    WHERE ch.mapped AND d.bucket >= %(win_start)s AND d.bucket < %(win_end)s
    GROUP BY ch.station_id
), flagged AS (
    -- live flags over the window, per mapped channel; a whole-station flag covers every channel
    SELECT ch.id AS channel_id, ch.station_id,
           tstzrange(greatest(f.start_time, %(win_start)s), least(f.end_time, %(win_end)s)) AS r
    FROM flag f JOIN chan ch ON ch.station_id = f.station_id AND ch.mapped
    WHERE f.deleted_at IS NULL AND f.start_time < %(win_end)s AND f.end_time > %(win_start)s
      AND (f.whole_station OR EXISTS (
           SELECT 1 FROM flag_channel fc WHERE fc.flag_id = f.id AND fc.channel_id = ch.id))
), merged AS (
    -- overlapping flags joined, so no reading is counted twice
    SELECT channel_id, station_id, lower(m) AS a, upper(m) AS b,
           date_bin(INTERVAL '1 day', lower(m) - INTERVAL '1 microsecond', TIMESTAMPTZ '2000-01-01 00:00+00')
             + INTERVAL '1 day' AS day_a,
           date_bin(INTERVAL '1 day', upper(m), TIMESTAMPTZ '2000-01-01 00:00+00') AS day_b
    FROM (SELECT channel_id, station_id, unnest(range_agg(r)) AS m FROM flagged GROUP BY 1, 2) x
), flag_counts AS (
    -- (the window bounds repeated on reading let TimescaleDB drop the other chunks when planning)
    SELECT m.station_id, sum(CASE WHEN m.day_a < m.day_b THEN
               (SELECT count(*) FROM reading r WHERE r.channel_id = m.channel_id
                 AND r.time >= m.a AND r.time < m.day_a
                 AND r.time >= %(win_start)s AND r.time < %(win_end)s)
             + (SELECT coalesce(sum(d.n), 0) FROM reading_1d d WHERE d.channel_id = m.channel_id
                 AND d.bucket >= m.day_a AND d.bucket < m.day_b)
             + (SELECT count(*) FROM reading r WHERE r.channel_id = m.channel_id
                 AND r.time >= m.day_b AND r.time < m.b
                 AND r.time >= %(win_start)s AND r.time < %(win_end)s)
           ELSE (SELECT count(*) FROM reading r WHERE r.channel_id = m.channel_id
                 AND r.time >= m.a AND r.time < m.b
                 AND r.time >= %(win_start)s AND r.time < %(win_end)s) END) AS flagged_30d
    FROM merged m
    GROUP BY m.station_id
), findings AS (
    -- counted from suggested_flag_station_idx alone (a neglected fleet has 100,000s open)
    SELECT g.station_id, count(*) AS open_findings
    FROM suggested_flag g
    WHERE g.status = 'open' AND g.start_time < %(now)s
    GROUP BY g.station_id
)
SELECT b.id, b.name, b.latitude, b.longitude, b.elevation_m, b.last_reading, b.first_reading,
       b.channels, b.mapped_channels, b.interval_s,
       coalesce(fi.files_imported, 0) AS files_imported, coalesce(fi.files_failed, 0) AS files_failed,
       coalesce(fi.files_pending, 0) AS files_pending, fi.last_file_received,
       coalesce(fi.files_7d, 0) AS files_7d, coalesce(fi.failed_7d, 0) AS failed_7d,
       coalesce(ru.readings_30d, 0) AS readings_30d, coalesce(fc.flagged_30d, 0) AS flagged_30d,
       coalesce(fd.open_findings, 0) AS open_findings,
       -- the last day of data: periods ending in the 24 h up to the end of the last reading's
       -- period, i.e. times in [last_reading + interval - 24 h, last_reading]
       -- (suggested_flag_open_fail_idx: by station and end, so only the last day's are read)
       (SELECT count(*) FROM suggested_flag g
         WHERE g.station_id = b.id AND g.status = 'open' AND g.severity = 'fail' AND g.start_time < %(now)s
           AND g.start_time < b.last_reading + make_interval(secs => coalesce(b.interval_s, 600))
           AND g.end_time > b.last_reading + make_interval(secs => coalesce(b.interval_s, 600))
                            - INTERVAL '1 day') AS fail_findings_last_day,
       array(SELECT ch.column_name FROM chan ch
              WHERE ch.station_id = b.id AND ch.mapped AND ch.last_time IS NOT NULL
                AND ch.last_time < b.last_reading + make_interval(secs => coalesce(b.interval_s, 600))
                                   - INTERVAL '1 day'
              ORDER BY ch.column_name) AS silent_channels,
       (SELECT count(*) FROM chan ch
         WHERE ch.station_id = b.id AND ch.mapped
           AND ch.last_time >= b.last_reading + make_interval(secs => coalesce(b.interval_s, 600))
                               - INTERVAL '1 day') AS reporting_channels
FROM base b
LEFT JOIN files fi ON fi.station_id = b.id
LEFT JOIN rollup ru ON ru.station_id = b.id
LEFT JOIN flag_counts fc ON fc.station_id = b.id
LEFT JOIN findings fd ON fd.station_id = b.id
ORDER BY b.name;

-- name: station_time_range
-- The station's first and last reading, from its channels' extents (core.extents).
SELECT min(e.first_time) AS first_time, max(e.last_time) AS last_time
FROM channel c JOIN channel_extent e ON e.channel_id = c.id
WHERE c.station_id = %(station_id)s;

-- name: series_raw
-- At most %(per_channel)s points per channel (one more tells the caller it was cut).
SELECT channel_id, time, mean, min, max FROM (
    SELECT channel_id, time, value AS mean, value AS min, value AS max,
           row_number() OVER (PARTITION BY channel_id ORDER BY time) AS k
    FROM reading
    WHERE channel_id = ANY(%(channel_ids)s) AND time >= %(start)s AND time < %(end)s
) s WHERE k <= %(per_channel)s + 1
ORDER BY channel_id, time;

-- name: series_rollup
-- The table (reading_1h or reading_1d) is an identifier formatted in by core.series.
SELECT channel_id, time, mean, min, max FROM (
    SELECT channel_id, bucket AS time, mean, min, max,
           row_number() OVER (PARTITION BY channel_id ORDER BY bucket) AS k
    FROM {}
    WHERE channel_id = ANY(%(channel_ids)s) AND bucket >= %(start)s AND bucket < %(end)s
) s WHERE k <= %(per_channel)s + 1
ORDER BY channel_id, time;

-- name: queue_progress
-- The current batch: files received since the oldest one still waiting (all files when
-- none waits, so the counts then show the totals).
SELECT count(*) FILTER (WHERE status = 'queued') AS queued,
       count(*) FILTER (WHERE status = 'importing') AS importing,
       count(*) FILTER (WHERE status = 'imported') AS imported,
       count(*) FILTER (WHERE status = 'failed') AS failed
FROM source_file
WHERE received_at >= coalesce(
    (SELECT min(received_at) FROM source_file WHERE status IN ('queued', 'importing')), '-infinity');

-- name: route_by_header
-- A file without a station: match its logger serial, else its station name.
SELECT station_id FROM (
    SELECT l.station_id, 1 AS rank FROM logger l
    WHERE %(serial)s <> '' AND l.serial = %(serial)s
    UNION ALL
    SELECT s.id, 2 FROM station s
    WHERE %(station_name)s <> '' AND lower(s.name) = lower(%(station_name)s)
) m ORDER BY rank LIMIT 1;

-- name: set_file_station
UPDATE source_file SET station_id = %(station_id)s WHERE id = %(id)s;

-- name: source_file_needs_station
UPDATE source_file
SET status = 'needs station', format = %(format)s, error = %(error)s, error_line = NULL,
    finished_at = clock_timestamp()
WHERE id = %(id)s;

-- name: source_file_unpacked
-- warnings: the members skipped (hidden files, macOS metadata, links, names leading out).
UPDATE source_file
SET status = 'unpacked', format = 'archive', n_rows = %(n_files)s, n_readings = 0, warnings = %(warnings)s,
    finished_at = clock_timestamp()
WHERE id = %(id)s;

-- name: assign_file_station
UPDATE source_file SET station_id = %(station_id)s, status = 'queued', error = NULL
WHERE id = %(id)s AND status IN ('needs station', 'failed')
RETURNING id;

-- name: requeue_file
UPDATE source_file f SET status = 'queued', error = NULL, error_line = NULL
FROM (SELECT id, status AS previous_status FROM source_file WHERE id = %(id)s FOR UPDATE) old
WHERE f.id = old.id AND f.status IN ('imported', 'failed', 'needs station', 'importing', 'queued')
RETURNING f.id, old.previous_status;

-- name: inbox_seen
SELECT * FROM inbox_file WHERE path = %(path)s;

-- name: inbox_mark
INSERT INTO inbox_file (path, size_bytes, mtime, source_file_id)
VALUES (%(path)s, %(size_bytes)s, %(mtime)s, %(source_file_id)s)
ON CONFLICT (path) DO UPDATE
SET size_bytes = EXCLUDED.size_bytes, mtime = EXCLUDED.mtime,
    source_file_id = EXCLUDED.source_file_id, refused = NULL, seen_at = now();

-- name: inbox_refuse
-- An entry of the inbox that is not read (a link, a hard link, a pipe, the home folder).
INSERT INTO inbox_file (path, size_bytes, mtime, refused)
VALUES (%(path)s, %(size_bytes)s, %(mtime)s, %(reason)s)
ON CONFLICT (path) DO UPDATE
SET size_bytes = EXCLUDED.size_bytes, mtime = EXCLUDED.mtime, source_file_id = NULL,
    refused = EXCLUDED.refused, seen_at = now();

-- name: inbox_forget_refused
-- Entries refused earlier that this scan no longer refused (gone, or now a regular file).
DELETE FROM inbox_file WHERE refused IS NOT NULL AND NOT path = ANY(%(paths)s::text[]);

-- name: inbox_refused
SELECT path, refused AS reason, seen_at FROM inbox_file WHERE refused IS NOT NULL ORDER BY path;

-- name: list_files
SELECT f.id, f.original_name, f.format, f.status, f.n_rows, f.n_readings, f.n_changed,
       f.first_time, f.last_time, f.error, f.error_line, f.origin, f.received_by, f.received_at,
       f.size_bytes, f.sha256, f.parent_id, f.duplicate_of, f.warnings, s.name AS station
FROM source_file f LEFT JOIN station s ON s.id = f.station_id
WHERE (%(station)s::text IS NULL OR s.name = %(station)s OR (%(station)s = '-' AND f.station_id IS NULL))
  AND (%(status)s::text IS NULL OR f.status = %(status)s)
ORDER BY f.id DESC
LIMIT %(limit)s;

-- name: station_file_mapping
SELECT file_mapping FROM logger
WHERE station_id = %(station_id)s AND file_mapping IS NOT NULL
ORDER BY valid_from DESC NULLS LAST, id DESC LIMIT 1;

-- name: set_station_file_mapping
-- The mapping lives on the station's text-file logger (created when there is none).
WITH target AS (
    SELECT id FROM logger WHERE station_id = %(station_id)s
    ORDER BY (file_mapping IS NOT NULL) DESC, valid_from DESC NULLS LAST, id DESC LIMIT 1
), updated AS (
    UPDATE logger SET file_mapping = %(mapping)s::jsonb,
        utc_offset_minutes = coalesce(%(utc_offset_minutes)s, utc_offset_minutes),
        timestamp_is_end = coalesce(%(timestamp_is_end)s, timestamp_is_end)
    WHERE id IN (SELECT id FROM target) RETURNING id
)
INSERT INTO logger (station_id, oem, model, file_mapping, utc_offset_minutes, timestamp_is_end)
SELECT %(station_id)s, '', 'text files', %(mapping)s::jsonb, coalesce(%(utc_offset_minutes)s, 0),
       %(timestamp_is_end)s::boolean
WHERE NOT EXISTS (SELECT 1 FROM updated);
