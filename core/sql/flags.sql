-- Named queries of core.flags and core.qc_runner (flags, suggested flags, quality-check runs).
-- Values only as %(name)s parameters; identifiers only through psycopg.sql.Identifier.
-- A period [a, b) overlaps a flag when flag.start_time < b AND flag.end_time > a.

-- name: find_station
-- By id when %(id)s is given, else by name.
SELECT * FROM station
WHERE (%(id)s::integer IS NOT NULL AND id = %(id)s) OR (%(id)s::integer IS NULL AND name = %(name)s);

-- name: station_channels
SELECT c.id, c.column_name, c.statistic, c.unit, c.measurement_point_id,
       mp.measurement_type, mp.height_m, mp.orientation_deg, mp.unit AS point_unit
FROM channel c LEFT JOIN measurement_point mp ON mp.id = c.measurement_point_id
WHERE c.station_id = %(station_id)s
ORDER BY c.id;

-- name: channels_at_height
-- Every statistic of every sensor at this height (± 5 cm).
SELECT c.id FROM channel c JOIN measurement_point mp ON mp.id = c.measurement_point_id
WHERE c.station_id = %(station_id)s AND abs(mp.height_m - %(height_m)s) <= 0.05
ORDER BY c.id;

-- name: channels_of_point
SELECT id FROM channel WHERE measurement_point_id = %(point_id)s ORDER BY id;

-- name: lock_station_flags
-- Serialises writers of one station's flags and suggestions (until the transaction ends).
SELECT pg_advisory_xact_lock(1179402567, %(station_id)s);

-- --- flags ---------------------------------------------------------------------------------

-- name: insert_flag
INSERT INTO flag (station_id, start_time, end_time, whole_station, category, note, source, rule, author)
VALUES (%(station_id)s, %(start_time)s, %(end_time)s, %(whole_station)s, %(category)s, %(note)s,
        %(source)s, %(rule)s, %(author)s)
RETURNING *;

-- name: insert_flag_channels
INSERT INTO flag_channel (flag_id, channel_id)
SELECT %(flag_id)s, unnest(%(channel_ids)s::integer[]);

-- name: delete_flag_channels
DELETE FROM flag_channel WHERE flag_id = %(flag_id)s;

-- name: flag_for_update
SELECT f.*, s.name AS station,
       array(SELECT fc.channel_id FROM flag_channel fc WHERE fc.flag_id = f.id ORDER BY 1) AS channel_ids
FROM flag f JOIN station s ON s.id = f.station_id
WHERE f.id = %(id)s
FOR UPDATE OF f;

-- name: flag_by_id
SELECT f.*, s.name AS station,
       array(SELECT fc.channel_id FROM flag_channel fc WHERE fc.flag_id = f.id ORDER BY 1) AS channel_ids,
       array(SELECT c.column_name FROM flag_channel fc JOIN channel c ON c.id = fc.channel_id
             WHERE fc.flag_id = f.id ORDER BY c.id) AS columns
FROM flag f JOIN station s ON s.id = f.station_id
WHERE f.id = %(id)s;

-- name: update_flag
UPDATE flag
SET category = %(category)s, note = %(note)s, start_time = %(start_time)s, end_time = %(end_time)s,
    whole_station = %(whole_station)s, updated_at = now()
WHERE id = %(id)s;

-- name: set_flag_deleted
UPDATE flag SET deleted_by = %(actor)s, deleted_at = now(), updated_at = now()
WHERE id = %(id)s;

-- name: set_flag_undeleted
UPDATE flag SET deleted_by = NULL, deleted_at = NULL, updated_at = now()
WHERE id = %(id)s;

-- name: list_flags
-- A flag applies to the channels it lists, and to every channel when whole_station.
SELECT f.*, s.name AS station,
       array(SELECT fc.channel_id FROM flag_channel fc WHERE fc.flag_id = f.id ORDER BY 1) AS channel_ids,
       array(SELECT c.column_name FROM flag_channel fc JOIN channel c ON c.id = fc.channel_id
             WHERE fc.flag_id = f.id ORDER BY c.id) AS columns
FROM flag f JOIN station s ON s.id = f.station_id
WHERE f.station_id = %(station_id)s
  AND (%(include_deleted)s OR f.deleted_at IS NULL)
  AND (%(start)s::timestamptz IS NULL OR f.end_time > %(start)s)
  AND (%(end)s::timestamptz IS NULL OR f.start_time < %(end)s)
  AND (%(categories)s::text[] IS NULL OR f.category = ANY(%(categories)s::text[]))
  AND (%(channel_ids)s::integer[] IS NULL OR f.whole_station OR EXISTS (
       SELECT 1 FROM flag_channel fc
       WHERE fc.flag_id = f.id AND fc.channel_id = ANY(%(channel_ids)s::integer[])))
ORDER BY f.start_time, f.id;

-- name: flag_mask
-- Flagged periods of each channel, clipped to [start, end) (unbounded where NULL).
SELECT c.id AS channel_id,
       greatest(f.start_time, coalesce(%(start)s::timestamptz, f.start_time)) AS start_time,
       least(f.end_time, coalesce(%(end)s::timestamptz, f.end_time)) AS end_time
FROM channel c
JOIN flag f ON f.station_id = c.station_id
WHERE c.id = ANY(%(channel_ids)s::integer[])
  AND f.deleted_at IS NULL
  AND (%(start)s::timestamptz IS NULL OR f.end_time > %(start)s)
  AND (%(end)s::timestamptz IS NULL OR f.start_time < %(end)s)
  AND NOT (f.category = ANY(%(exclude_categories)s::text[]))
  AND (f.whole_station OR EXISTS (
       SELECT 1 FROM flag_channel fc WHERE fc.flag_id = f.id AND fc.channel_id = c.id))
ORDER BY 1, 2;

-- --- suggested flags -----------------------------------------------------------------------

-- name: suggestions_near
-- Suggestions of the station's checks that a new run over [lo, hi) may replace or merge with.
SELECT * FROM suggested_flag
WHERE station_id = %(station_id)s AND rule = ANY(%(rules)s::text[])
  AND start_time <= %(hi)s AND end_time >= %(lo)s
ORDER BY id
FOR UPDATE;

-- name: insert_suggestion
INSERT INTO suggested_flag (station_id, rule, severity, start_time, end_time, message, channel_ids)
VALUES (%(station_id)s, %(rule)s, %(severity)s, %(start_time)s, %(end_time)s, %(message)s,
        %(channel_ids)s::integer[])
RETURNING id;

-- name: update_suggestion
UPDATE suggested_flag
SET severity = %(severity)s, start_time = %(start_time)s, end_time = %(end_time)s,
    message = %(message)s, updated_at = now()
WHERE id = %(id)s;

-- name: delete_suggestions
-- Only open suggestions: decided ones are kept as the record of a decision.
DELETE FROM suggested_flag WHERE id = ANY(%(ids)s::integer[]) AND status = 'open';

-- name: list_suggestions
SELECT g.*, s.name AS station,
       array(SELECT c.column_name FROM unnest(g.channel_ids) AS u(id) JOIN channel c ON c.id = u.id
             ORDER BY c.id) AS columns
FROM suggested_flag g JOIN station s ON s.id = g.station_id
WHERE g.station_id = %(station_id)s AND (%(status)s::text IS NULL OR g.status = %(status)s)
ORDER BY g.start_time, g.rule, g.id;

-- name: suggestions_for_update
SELECT * FROM suggested_flag WHERE id = ANY(%(ids)s::integer[]) ORDER BY id FOR UPDATE;

-- name: open_suggestion_ids
SELECT id FROM suggested_flag WHERE station_id = %(station_id)s AND status = 'open' ORDER BY id;

-- name: decide_suggestion
UPDATE suggested_flag
SET status = %(status)s, decided_by = %(actor)s, decided_at = now(), flag_id = %(flag_id)s,
    updated_at = now()
WHERE id = %(id)s;

-- --- quality-check runs (core.qc_runner) ---------------------------------------------------

-- name: qc_readings
-- One row per channel: the times and values of its readings as binary arrays (array_send),
-- which numpy reads directly (far faster than a row per reading). Both arrays list the
-- readings in the same order, not necessarily by time (no sort: a hash aggregate).
SELECT channel_id,
       array_send(array_agg(time)) AS times,
       array_send(array_agg(value)) AS vals
FROM reading
WHERE channel_id = ANY(%(channel_ids)s::integer[]) AND time >= %(start)s AND time < %(end)s
GROUP BY channel_id;

-- name: last_time_before
-- The station's last record before %(time)s (index-backed, per channel).
SELECT max(t.time) AS time FROM unnest(%(channel_ids)s::integer[]) AS c(id)
CROSS JOIN LATERAL (SELECT r.time FROM reading r WHERE r.channel_id = c.id AND r.time < %(time)s
                    ORDER BY r.time DESC LIMIT 1) t;

-- name: first_time_from
-- The station's first record at or after %(time)s.
SELECT min(t.time) AS time FROM unnest(%(channel_ids)s::integer[]) AS c(id)
CROSS JOIN LATERAL (SELECT r.time FROM reading r WHERE r.channel_id = c.id AND r.time >= %(time)s
                    ORDER BY r.time LIMIT 1) t;

-- name: insert_qc_request
INSERT INTO qc_request (station_id, start_time, end_time)
VALUES (%(station_id)s, %(start_time)s, %(end_time)s);

-- name: take_qc_requests
-- All waiting ranges of a station (rows stay locked, and come back if the run fails).
SELECT id, start_time, end_time FROM qc_request
WHERE station_id = %(station_id)s
ORDER BY start_time
FOR UPDATE SKIP LOCKED;

-- name: delete_qc_requests
DELETE FROM qc_request WHERE id = ANY(%(ids)s::bigint[]);

-- --- flag history and cleaning logs (core.flags.flag_history, core.cleaning_log) -------------

-- name: flag_history
-- Every audited change of one flag, oldest first (create, update, delete, undelete).
SELECT id, at, actor, action, details FROM audit
WHERE entity = 'flag' AND entity_id = %(flag_id)s
ORDER BY at, id;

-- name: station_loggers
-- The station's logger configurations, for the recording interval in force at a time.
SELECT interval_s, valid_from, valid_to FROM logger
WHERE station_id = %(station_id)s
ORDER BY valid_from NULLS FIRST, id;
