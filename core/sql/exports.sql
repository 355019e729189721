-- Named queries of core.exports (exports built on request by the worker).

-- name: station
SELECT id, name, latitude, longitude, elevation_m FROM station WHERE name = %(name)s;

-- name: export_channels
-- The station's channels with what the export names them by. mapped_only: the channels
-- the conventions, a Task 43 document or an analyst mapped (the default selection).
SELECT c.id, c.column_name, c.statistic, c.unit AS channel_unit, c.mapped, c.measurement_point_id,
       coalesce(mp.measurement_type, 'unknown') AS measurement_type, mp.height_m, mp.orientation_deg,
       coalesce(nullif(mp.unit, ''), c.unit) AS unit, mp.name AS point_name
FROM channel c
LEFT JOIN measurement_point mp ON mp.id = c.measurement_point_id
WHERE c.station_id = %(station_id)s
  AND (NOT %(mapped_only)s OR c.mapped)
  AND (%(channel_ids)s::integer[] IS NULL OR c.id = ANY(%(channel_ids)s::integer[]))
  AND (%(types)s::text[] IS NULL OR coalesce(mp.measurement_type, 'unknown') = ANY(%(types)s::text[]))
ORDER BY c.id;

-- name: station_channel_ids
SELECT id FROM channel WHERE station_id = %(station_id)s ORDER BY id;

-- name: data_range
-- First and last reading of the channels (index-backed, one probe per channel and end).
SELECT (SELECT min(t.time) FROM unnest(%(channel_ids)s::integer[]) AS c(id)
        CROSS JOIN LATERAL (SELECT r.time FROM reading r WHERE r.channel_id = c.id
                            ORDER BY r.time LIMIT 1) t) AS first_time,
       (SELECT max(t.time) FROM unnest(%(channel_ids)s::integer[]) AS c(id)
        CROSS JOIN LATERAL (SELECT r.time FROM reading r WHERE r.channel_id = c.id
                            ORDER BY r.time DESC LIMIT 1) t) AS last_time;

-- name: input_versions
-- What an export of the station is built from, each as a hash of the rows that decide it:
-- cheap (a few thousand metadata rows at most), and any change gives a new value.
SELECT
  (SELECT count(*) FROM source_file f
   WHERE f.station_id = %(station_id)s AND f.status = 'imported') AS n_files,
  (SELECT md5(coalesce(string_agg(concat_ws(':', f.id, f.n_readings, f.n_changed, f.first_time,
                                            f.last_time, f.finished_at), ',' ORDER BY f.id), ''))
   FROM source_file f WHERE f.station_id = %(station_id)s AND f.status = 'imported') AS data_version,
  (SELECT count(*) FROM flag f WHERE f.station_id = %(station_id)s AND f.deleted_at IS NULL) AS n_flags,
  (SELECT md5(coalesce(string_agg(concat_ws(':', f.id, f.start_time, f.end_time, f.category,
                                            f.whole_station, f.updated_at, f.deleted_at,
                                            (SELECT string_agg(fc.channel_id::text, ' ' ORDER BY fc.channel_id)
                                             FROM flag_channel fc WHERE fc.flag_id = f.id)),
                               ',' ORDER BY f.id), ''))
   FROM flag f WHERE f.station_id = %(station_id)s) AS flag_version,
  (SELECT count(*) FROM calibration c JOIN measurement_point mp ON mp.id = c.measurement_point_id
   WHERE mp.station_id = %(station_id)s) AS n_calibrations,
  (SELECT md5(coalesce(string_agg(concat_ws(':', c.id, c.measurement_point_id, c.valid_from, c.valid_to,
                                            c.logger_slope, c.logger_offset, c.cal_slope, c.cal_offset),
                               ',' ORDER BY c.id), ''))
   FROM calibration c JOIN measurement_point mp ON mp.id = c.measurement_point_id
   WHERE mp.station_id = %(station_id)s) AS calibration_version,
  md5(concat_ws('|',
    (SELECT concat_ws(':', s.name, s.latitude, s.longitude, s.elevation_m) FROM station s
     WHERE s.id = %(station_id)s),
    (SELECT string_agg(concat_ws(':', mp.id, mp.name, mp.measurement_type, mp.height_m, mp.orientation_deg,
                                 mp.unit), ',' ORDER BY mp.id)
     FROM measurement_point mp WHERE mp.station_id = %(station_id)s),
    (SELECT string_agg(concat_ws(':', c.id, c.column_name, c.statistic, c.measurement_point_id, c.unit,
                                 c.mapped), ',' ORDER BY c.id)
     FROM channel c WHERE c.station_id = %(station_id)s),
    (SELECT string_agg(concat_ws(':', m.id, m.channel_id, m.measurement_point_id, m.statistic,
                                 m.is_ignored, m.valid_from, m.valid_to), ',' ORDER BY m.id)
     FROM channel_mapping m JOIN channel c ON c.id = m.channel_id
     WHERE c.station_id = %(station_id)s))) AS metadata_version;

-- name: reusable
-- A finished (or a queued or running) export with the same parameters and inputs, newest first.
SELECT id, status, file_path FROM export
WHERE params_hash = %(params_hash)s AND inputs_key = %(inputs_key)s
  AND status IN ('queued', 'running', 'done')
ORDER BY (status = 'done') DESC, id DESC;

-- name: insert_export
INSERT INTO export (station_id, format, params, params_hash, inputs, inputs_key, requested_by, status,
                    progress, message, file_name, file_path, size_bytes, n_rows, n_values, provenance,
                    started_at, finished_at, reused_from)
SELECT %(station_id)s, %(format)s, %(params)s, %(params_hash)s, %(inputs)s, %(inputs_key)s, %(actor)s,
       coalesce(o.status, 'queued'), coalesce(o.progress, 0),
       CASE WHEN o.id IS NULL THEN 'waiting for a worker' ELSE 'reused export ' || o.id END,
       o.file_name, o.file_path, o.size_bytes, o.n_rows, o.n_values, o.provenance,
       o.started_at, o.finished_at, o.id
FROM (SELECT 1) AS one
LEFT JOIN export o ON o.id = %(reuse_id)s
RETURNING id;

-- name: export_by_id
SELECT e.*, s.name AS station, (e.reused_from IS NOT NULL) AS reused
FROM export e JOIN station s ON s.id = e.station_id
WHERE e.id = %(id)s;

-- name: list_exports
SELECT e.*, s.name AS station, (e.reused_from IS NOT NULL) AS reused
FROM export e JOIN station s ON s.id = e.station_id
WHERE (%(station)s::text IS NULL OR s.name = %(station)s)
ORDER BY e.requested_at DESC, e.id DESC
LIMIT %(limit)s;

-- name: claim_export
-- Take a queued export (or one whose worker died while running it: the job is retried).
UPDATE export
SET status = 'running', started_at = clock_timestamp(), attempts = attempts + 1, progress = 0,
    message = 'starting', error = NULL
WHERE id = %(id)s AND status IN ('queued', 'running')
RETURNING *;

-- name: copy_readings
-- One batch of readings as binary COPY: one row per channel holding its times and values as
-- two arrays in the same (unspecified) order. One COPY message per channel keeps the client's
-- per-message cost negligible (a row per reading would cost more than the rest of the export).
COPY (SELECT channel_id, array_agg(time) AS times, array_agg(value) AS vals
      FROM reading
      WHERE channel_id = ANY(%(channel_ids)s::integer[]) AND time >= %(start)s AND time < %(end)s
      GROUP BY channel_id)
TO STDOUT (FORMAT BINARY);

-- name: export_progress
UPDATE export SET progress = %(progress)s, message = %(message)s WHERE id = %(id)s AND status = 'running';

-- name: export_done
UPDATE export
SET status = 'done', progress = 1, message = %(message)s, file_name = %(file_name)s,
    file_path = %(file_path)s, size_bytes = %(size_bytes)s, n_rows = %(n_rows)s, n_values = %(n_values)s,
    provenance = %(provenance)s, inputs = %(inputs)s, inputs_key = %(inputs_key)s,
    finished_at = clock_timestamp(), error = NULL
WHERE id = %(id)s;

-- name: export_failed
UPDATE export SET status = %(status)s, error = %(error)s, message = %(message)s,
       finished_at = CASE WHEN %(status)s = 'failed' THEN clock_timestamp() END
WHERE id = %(id)s;

-- name: export_job_ended
-- Its build job was given up (its worker kept dying): an export still waiting or running fails.
UPDATE export SET status = 'failed', error = %(error)s, message = 'failed', finished_at = clock_timestamp()
WHERE id = %(id)s AND status IN ('queued', 'running');

-- name: expired_files
-- Files of exports finished before %(before)s that are still on disk.
SELECT file_path FROM export
WHERE status = 'done' AND file_path IS NOT NULL
GROUP BY file_path
HAVING max(finished_at) < %(before)s;

-- name: expire_file
UPDATE export SET status = 'expired', expired_at = now(),
       message = 'file deleted after the retention period'
WHERE file_path = %(file_path)s AND status = 'done';

-- name: live_worker
-- Is a procrastinate worker alive (heartbeat in the last %(seconds)s seconds)?
SELECT EXISTS (SELECT 1 FROM procrastinate_workers
               WHERE last_heartbeat > now() - make_interval(secs => %(seconds)s)) AS alive;

-- name: native_step
-- The station's shortest logger interval (seconds): the finest step its readings have.
SELECT min(interval_s) AS step_s FROM logger WHERE station_id = %(station_id)s;

-- name: column_mappings
-- The measurement point each export column (channel) recorded over time, for the provenance.
SELECT m.channel_id, mp.name AS point, m.statistic, m.valid_from, m.valid_to
FROM channel_mapping m JOIN measurement_point mp ON mp.id = m.measurement_point_id
WHERE m.channel_id = ANY(%(channel_ids)s::integer[])
ORDER BY m.channel_id, m.valid_from NULLS FIRST, m.id;

-- name: reading_phase
-- Where the readings sit on the UTC grid of a step: the commonest offset (s, whole minutes)
-- of the first 50 readings of each channel from %(start)s (index probes, as data_range).
SELECT mod(mod(floor(extract(epoch FROM t.time))::bigint, %(step_s)s) + %(step_s)s, %(step_s)s) / 60 * 60
         AS phase_s, count(*) AS n
FROM unnest(%(channel_ids)s::integer[]) AS c(id)
CROSS JOIN LATERAL (SELECT r.time FROM reading r WHERE r.channel_id = c.id AND r.time >= %(start)s
                    ORDER BY r.time LIMIT 50) t
GROUP BY 1
ORDER BY n DESC, phase_s
LIMIT 1;
