-- Named queries of core.calibrations (calibration periods per measurement point), loaded once.
-- Values only as %(name)s parameters; identifiers only through psycopg.sql.Identifier.

-- name: channel_periods
-- The calibration periods of each channel's measurement point, clipped to the periods over
-- which the channel recorded that point (channel_mapping). A channel without mapping history
-- uses channel.measurement_point_id for all time. NULL bounds are open (infinite) ends.
WITH span AS (
    SELECT m.channel_id, m.measurement_point_id, tstzrange(m.valid_from, m.valid_to) AS r
    FROM channel_mapping m
    WHERE m.channel_id = ANY(%(channel_ids)s)
    UNION ALL
    SELECT c.id, c.measurement_point_id, tstzrange(NULL, NULL)
    FROM channel c
    WHERE c.id = ANY(%(channel_ids)s) AND c.measurement_point_id IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM channel_mapping m WHERE m.channel_id = c.id)
), clipped AS (
    SELECT s.channel_id, cal.*, s.r * tstzrange(cal.valid_from, cal.valid_to) AS r
    FROM span s
    JOIN calibration cal ON cal.measurement_point_id = s.measurement_point_id
    WHERE s.r && tstzrange(cal.valid_from, cal.valid_to)
)
SELECT channel_id, id, lower(r) AS valid_from, upper(r) AS valid_to,
       logger_slope, logger_offset, cal_slope, cal_offset, certificate, source
FROM clipped
ORDER BY channel_id, lower(r) NULLS FIRST, id;

-- name: points_of_station
SELECT mp.id, mp.name, mp.measurement_type, mp.height_m, mp.orientation_deg, mp.unit, mp.sensor, mp.source,
       (SELECT count(*) FROM calibration cal WHERE cal.measurement_point_id = mp.id) AS calibrations
FROM measurement_point mp WHERE mp.station_id = %(station_id)s
ORDER BY mp.measurement_type, mp.height_m DESC NULLS LAST, mp.name;

-- name: point_for_update
-- Locks the point: edits of one point's calibrations run one after the other, so the
-- overlap check cannot race.
SELECT mp.*, s.name AS station FROM measurement_point mp JOIN station s ON s.id = mp.station_id
WHERE mp.id = %(point_id)s FOR UPDATE OF mp;

-- name: calibrations_of_station
SELECT cal.id, cal.measurement_point_id, mp.name AS point, mp.measurement_type, mp.height_m,
       cal.valid_from, cal.valid_to, cal.logger_slope, cal.logger_offset, cal.cal_slope, cal.cal_offset,
       cal.certificate, cal.source, cal.entered_by, cal.created_at, cal.updated_at,
       sn.serial_number AS sensor_serial
FROM calibration cal
JOIN measurement_point mp ON mp.id = cal.measurement_point_id
LEFT JOIN sensor sn ON sn.id = cal.sensor_id
WHERE mp.station_id = %(station_id)s
ORDER BY mp.measurement_type, mp.height_m DESC NULLS LAST, mp.name, cal.valid_from NULLS FIRST, cal.id;

-- name: calibration_by_id
SELECT cal.*, mp.name AS point, mp.station_id, s.name AS station
FROM calibration cal
JOIN measurement_point mp ON mp.id = cal.measurement_point_id
JOIN station s ON s.id = mp.station_id
WHERE cal.id = %(id)s;

-- name: overlapping
-- Calibration periods of a point that overlap [valid_from, valid_to) (NULL = open end),
-- other than the one being edited.
SELECT id, valid_from, valid_to, source FROM calibration
WHERE measurement_point_id = %(point_id)s AND id IS DISTINCT FROM %(exclude_id)s
  AND tstzrange(valid_from, valid_to) && tstzrange(%(valid_from)s::timestamptz, %(valid_to)s::timestamptz)
ORDER BY valid_from NULLS FIRST, id;

-- name: insert_calibration
INSERT INTO calibration (measurement_point_id, valid_from, valid_to, logger_slope, logger_offset,
                         cal_slope, cal_offset, certificate, source, entered_by)
VALUES (%(point_id)s, %(valid_from)s, %(valid_to)s, %(logger_slope)s, %(logger_offset)s,
        %(cal_slope)s, %(cal_offset)s, %(certificate)s, 'manual', %(actor)s)
RETURNING id;

-- name: update_calibration
UPDATE calibration
SET valid_from = %(valid_from)s, valid_to = %(valid_to)s, logger_slope = %(logger_slope)s,
    logger_offset = %(logger_offset)s, cal_slope = %(cal_slope)s, cal_offset = %(cal_offset)s,
    certificate = %(certificate)s, updated_at = now()
WHERE id = %(id)s;

-- name: delete_calibration
DELETE FROM calibration WHERE id = %(id)s;

-- name: point_channels
-- The channels that record (or once recorded) a measurement point.
SELECT c.id, c.column_name, c.statistic FROM channel c
WHERE c.measurement_point_id = %(point_id)s
   OR EXISTS (SELECT 1 FROM channel_mapping m WHERE m.channel_id = c.id AND m.measurement_point_id = %(point_id)s)
ORDER BY c.statistic, c.column_name;

-- name: first_reading
-- The first reading time of any of the channels in [valid_from, valid_to) (NULL = open end);
-- one index probe per channel.
SELECT min(f.time) AS time
FROM unnest(%(channel_ids)s::int[]) AS ch(id)
CROSS JOIN LATERAL (
    SELECT r.time FROM reading r
    WHERE r.channel_id = ch.id AND r.time >= coalesce(%(valid_from)s::timestamptz, '-infinity')
      AND r.time < coalesce(%(valid_to)s::timestamptz, 'infinity')
    ORDER BY r.time LIMIT 1
) f;

-- name: point_by_name
SELECT mp.* FROM measurement_point mp JOIN station s ON s.id = mp.station_id
WHERE s.name = %(station)s AND mp.name = %(point)s;
