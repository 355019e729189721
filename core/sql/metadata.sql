-- Named queries of core.metadata and core.iea43 (station metadata), loaded once.
-- Values only as %(name)s parameters; identifiers only through psycopg.sql.Identifier.

-- name: station_by_id
SELECT * FROM station WHERE id = %(station_id)s;

-- name: channel_by_id
SELECT c.*, mp.name AS point_name, mp.measurement_type, mp.height_m, mp.orientation_deg
FROM channel c LEFT JOIN measurement_point mp ON mp.id = c.measurement_point_id
WHERE c.id = %(channel_id)s;

-- name: channels_without_point
SELECT * FROM channel
WHERE station_id = %(station_id)s AND measurement_point_id IS NULL
ORDER BY id;

-- name: ensure_point
-- Find or create a measurement point by name; `created` tells which (safe when two imports race).
INSERT INTO measurement_point (station_id, name, measurement_type, height_m, orientation_deg, unit, source)
VALUES (%(station_id)s, %(name)s, %(measurement_type)s, %(height_m)s, %(orientation_deg)s, %(unit)s,
        %(source)s)
ON CONFLICT (station_id, name) DO UPDATE SET name = EXCLUDED.name
RETURNING *, (xmax = 0) AS created;

-- name: point_has_statistic
-- Does another channel already record this statistic at the point?
SELECT EXISTS (
    SELECT 1 FROM channel
    WHERE measurement_point_id = %(point_id)s AND statistic = %(statistic)s AND id <> %(channel_id)s
) AS taken;

-- name: map_channel
UPDATE channel
SET measurement_point_id = %(measurement_point_id)s, statistic = %(statistic)s, unit = %(unit)s,
    mapped = %(mapped)s
WHERE id = %(channel_id)s;

-- name: channel_by_name
SELECT * FROM channel WHERE station_id = %(station_id)s AND column_name = %(column_name)s;

-- name: insert_channel
-- Returns nothing when another transaction created the channel first.
INSERT INTO channel (station_id, column_name, statistic, unit)
VALUES (%(station_id)s, %(column_name)s, %(statistic)s, %(unit)s)
ON CONFLICT (station_id, column_name) DO NOTHING
RETURNING *;

-- name: delete_empty_convention_points
-- Points guessed from column names that no channel uses any more (e.g. after a Task 43 import).
DELETE FROM measurement_point mp
WHERE mp.station_id = %(station_id)s AND mp.source = 'conventions'
  AND NOT EXISTS (SELECT 1 FROM channel c WHERE c.measurement_point_id = mp.id)
  AND NOT EXISTS (SELECT 1 FROM channel_mapping m WHERE m.measurement_point_id = mp.id)
RETURNING id, name;

-- name: unmap_channels_without_point
-- Channels whose point was deleted (ON DELETE SET NULL) are no longer mapped.
UPDATE channel SET mapped = false
WHERE station_id = %(station_id)s AND measurement_point_id IS NULL AND mapped
RETURNING id, column_name;

-- name: loggers_of_station
SELECT * FROM logger WHERE station_id = %(station_id)s
ORDER BY valid_from NULLS FIRST, serial, id;

-- name: points_of_station
SELECT mp.*,
       (SELECT count(*) FROM channel c WHERE c.measurement_point_id = mp.id) AS channels
FROM measurement_point mp WHERE mp.station_id = %(station_id)s
ORDER BY mp.measurement_type, mp.height_m DESC NULLS LAST, mp.name;

-- name: sensors_of_station
SELECT s.* FROM sensor s JOIN measurement_point mp ON mp.id = s.measurement_point_id
WHERE mp.station_id = %(station_id)s
ORDER BY s.measurement_point_id, s.valid_from NULLS FIRST, s.id;

-- name: calibrations_of_station
SELECT cal.* FROM calibration cal JOIN measurement_point mp ON mp.id = cal.measurement_point_id
WHERE mp.station_id = %(station_id)s
ORDER BY cal.measurement_point_id, cal.valid_from NULLS FIRST, cal.id;

-- name: channels_with_points
SELECT c.id, c.column_name, c.statistic, c.unit, c.mapped, c.measurement_point_id,
       mp.name AS point_name, mp.measurement_type, mp.height_m, mp.orientation_deg,
       mp.source AS point_source
FROM channel c LEFT JOIN measurement_point mp ON mp.id = c.measurement_point_id
WHERE c.station_id = %(station_id)s
ORDER BY mp.measurement_type NULLS LAST, mp.height_m DESC NULLS LAST, c.column_name;

-- name: mappings_of_station
SELECT m.*, c.column_name, mp.name AS point_name
FROM channel_mapping m
JOIN channel c ON c.id = m.channel_id
JOIN measurement_point mp ON mp.id = m.measurement_point_id
WHERE c.station_id = %(station_id)s
ORDER BY c.column_name, m.valid_from NULLS FIRST, m.id;

-- name: set_logger_timestamp_is_end
-- Whether a station's loggers (those with this serial, when given) stamp the end of the
-- period (NULL: as each file says, else the start); returns the loggers changed.
UPDATE logger SET timestamp_is_end = %(timestamp_is_end)s::boolean
WHERE station_id = %(station_id)s AND (%(serial)s::text IS NULL OR serial = %(serial)s)
RETURNING id, serial, valid_from, valid_to, timestamp_is_end;

-- name: insert_station_logger
-- A logger for a station that has none yet (the first file of it then uses this one).
INSERT INTO logger (station_id, serial, timestamp_is_end)
VALUES (%(station_id)s, coalesce(%(serial)s, ''), %(timestamp_is_end)s::boolean)
RETURNING id, serial, valid_from, valid_to, timestamp_is_end;
