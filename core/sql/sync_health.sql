-- Sync health (core.sync_health): is each station's data arriving, and each source running?
-- Everything is as of %(now)s: runs started, files received and readings at or after it do not count.

-- name: source_health
-- Each source with its last finished run, its trailing streak of failed runs (since its last
-- ok or partial run; a run cut short by a stopped worker, ``interrupted``, says nothing of
-- the source, as for alerts) and the stations it serves: its own, and those of the files
-- it has fetched.
SELECT s.id, s.name, s.kind, s.url, s.credentials, s.station_id, st.name AS station, s.every_minutes,
       s.enabled, s.blocked, s.pending_host_key, s.host_key, s.queued_at, s.created_at,
       last.id AS last_run_id, last.status AS last_status, last.started_at AS last_run_at,
       last.finished_at AS last_finished_at, last.n_listed AS last_listed, last.n_fetched AS last_fetched,
       last.n_waiting AS last_waiting, last.n_failed AS last_failed, last.error_class AS last_error_class,
       last.error AS last_error,
       streak.n AS failed_runs, streak.since AS failing_since, streak.error_class AS failing_class,
       running.started_at AS running_since,
       (running.started_at IS NOT NULL OR EXISTS (
            SELECT 1 FROM procrastinate_jobs j
            WHERE j.task_name = 'sm:sync_source' AND (j.args->>'source_id')::integer = s.id
              AND j.status IN ('todo', 'doing'))) AS pending,
       ARRAY(SELECT DISTINCT x FROM unnest(
           array_append(ARRAY(SELECT f.station_id FROM source_remote_file rf
                              JOIN source_file f ON f.id = rf.source_file_id
                              WHERE rf.source_id = s.id AND f.station_id IS NOT NULL
                                AND rf.fetched_at < %(now)s), s.station_id)) x
             WHERE x IS NOT NULL) AS station_ids
FROM source s
LEFT JOIN station st ON st.id = s.station_id
LEFT JOIN LATERAL (
    SELECT * FROM source_run r
    WHERE r.source_id = s.id AND r.status <> 'running' AND r.started_at < %(now)s
    ORDER BY r.id DESC LIMIT 1
) last ON true
LEFT JOIN LATERAL (
    SELECT r.started_at FROM source_run r
    WHERE r.source_id = s.id AND r.status = 'running' AND r.started_at < %(now)s
    ORDER BY r.id DESC LIMIT 1
) running ON true
LEFT JOIN LATERAL (
    SELECT count(*) AS n, min(r.started_at) AS since,
           (array_agg(r.error_class ORDER BY r.id DESC))[1] AS error_class
    FROM source_run r
    WHERE r.source_id = s.id AND r.status = 'failed' AND r.started_at < %(now)s
      AND r.id > coalesce((SELECT max(ok.id) FROM source_run ok
                           WHERE ok.source_id = s.id AND ok.status IN ('ok', 'partial')
                             AND ok.started_at < %(now)s), 0)
) streak ON true
ORDER BY s.name;

-- name: station_arrivals
-- Each station's newest file received (by any way in: inbox, upload, CLI, source), its
-- newest reading (per channel: its extent, core.extents, or an index probe when that ends
-- at or after now) and the interval of its logger in force.
SELECT s.id, s.name,
       (SELECT max(f.received_at) FROM source_file f
         WHERE f.station_id = s.id AND f.received_at < %(now)s) AS last_file,
       (SELECT max(CASE WHEN e.last_time < %(now)s THEN e.last_time
                        WHEN e.first_time < %(now)s THEN
                            (SELECT r.time FROM reading r WHERE r.channel_id = c.id AND r.time < %(now)s
                              ORDER BY r.time DESC LIMIT 1) END)
          FROM channel c JOIN channel_extent e ON e.channel_id = c.id
         WHERE c.station_id = s.id) AS last_reading,
       (SELECT l.interval_s FROM logger l WHERE l.station_id = s.id
         ORDER BY (coalesce(l.valid_from, '-infinity') <= %(now)s
                   AND coalesce(l.valid_to, 'infinity') > %(now)s) DESC,
                  l.valid_from DESC NULLS LAST, l.id DESC
         LIMIT 1) AS interval_s
FROM station s
WHERE %(station_ids)s::integer[] IS NULL OR s.id = ANY(%(station_ids)s::integer[])
ORDER BY s.name;

-- name: sync_pending
-- Is a run of the source queued or running (a procrastinate job, or an unfinished run)?
SELECT EXISTS (
    SELECT 1 FROM procrastinate_jobs j
    WHERE j.task_name = 'sm:sync_source' AND (j.args->>'source_id')::integer = %(source_id)s
      AND j.status IN ('todo', 'doing')
) OR EXISTS (
    SELECT 1 FROM source_run r WHERE r.source_id = %(source_id)s AND r.status = 'running'
) AS pending;
