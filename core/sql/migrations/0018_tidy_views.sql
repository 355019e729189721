-- Tidy views for notebooks and other read-only clients (core.reader_roles).
--
-- Schema `tidy` holds views only. A reader role (`stationmanager db reader-role NAME`) is
-- granted USAGE on this schema and SELECT on its views, and nothing on the base tables: a
-- view runs with its owner's rights, so the role reads exactly what these views show.
--
-- Metadata is the channel's current mapping (as exports name their columns): measurement
-- type ('unknown' when unmapped), height, orientation, statistic, and the unit of the
-- measurement point (else the column's own). Times are UTC period starts.
--
-- tidy.readings gives each reading as logged (`value`), recalibrated (`value_calibrated`,
-- the rules of core.calibrations) and the categories of the live flags that cover it
-- (`flag`, the rules of core.flags.flag_mask). Both are computed per row only when
-- selected (the view is flattened into the query: an unused column costs nothing).

CREATE SCHEMA tidy;
COMMENT ON SCHEMA tidy IS 'StationManager: read-only tidy views for notebooks (docs/notebooks.md)';

CREATE VIEW tidy.stations AS
SELECT s.name AS station, s.latitude, s.longitude, s.elevation_m, s.kind
FROM station s;

CREATE VIEW tidy.channels AS
SELECT s.name AS station,
       c.column_name AS channel,
       coalesce(mp.measurement_type, 'unknown') AS measurement_type,
       mp.height_m,
       mp.orientation_deg,
       c.statistic,
       coalesce(nullif(mp.unit, ''), c.unit) AS unit,
       mp.sensor,
       mp.name AS measurement_point,
       c.mapped
FROM channel c
JOIN station s ON s.id = c.station_id
LEFT JOIN measurement_point mp ON mp.id = c.measurement_point_id;

-- Calibration periods per channel: each period of the channel's measurement point clipped to
-- the time the channel recorded that point (channel_mapping; without mapping history, the
-- channel's point for all time), as core/sql/calibrations.sql `channel_periods`.
-- valid_from/valid_to NULL = open end.
CREATE VIEW tidy.calibrations AS
WITH span AS (
    SELECT m.channel_id, m.measurement_point_id, tstzrange(m.valid_from, m.valid_to) AS r
    FROM channel_mapping m
    UNION ALL
    SELECT c.id, c.measurement_point_id, tstzrange(NULL, NULL)
    FROM channel c
    WHERE c.measurement_point_id IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM channel_mapping m WHERE m.channel_id = c.id)
), clipped AS (
    SELECT s.channel_id, cal.id, cal.logger_slope, cal.logger_offset, cal.cal_slope, cal.cal_offset,
           cal.certificate, s.r * tstzrange(cal.valid_from, cal.valid_to) AS r
    FROM span s
    JOIN calibration cal ON cal.measurement_point_id = s.measurement_point_id
    WHERE s.r && tstzrange(cal.valid_from, cal.valid_to)
)
SELECT st.name AS station, c.column_name AS channel, k.id AS calibration_id,
       lower(k.r) AS valid_from, upper(k.r) AS valid_to,
       k.logger_slope, k.logger_offset, k.cal_slope, k.cal_offset, k.certificate
FROM clipped k
JOIN channel c ON c.id = k.channel_id
JOIN station st ON st.id = c.station_id;

CREATE VIEW tidy.readings AS
SELECT r.time,
       s.name AS station,
       c.column_name AS channel,
       coalesce(mp.measurement_type, 'unknown') AS measurement_type,
       mp.height_m,
       mp.orientation_deg,
       c.statistic,
       coalesce(nullif(mp.unit, ''), c.unit) AS unit,
       r.value,
       -- core.calibrations.apply: levels take the full line, spreads the slope ratio; the
       -- first period (by start, open start first, then id) covering the time decides;
       -- other statistics, and times no period covers, keep the logged value.
       CASE
           WHEN c.statistic IN ('avg', 'min', 'max', 'gust', 'sample', 'median', 'mode', 'sd', 'range') THEN
               coalesce((
                   SELECT CASE WHEN c.statistic IN ('sd', 'range')
                               THEN r.value * abs(k.cal_slope / k.logger_slope)
                               ELSE (r.value - k.logger_offset) / k.logger_slope * k.cal_slope + k.cal_offset
                          END
                   FROM (
                       SELECT m.measurement_point_id, tstzrange(m.valid_from, m.valid_to) AS r
                       FROM channel_mapping m WHERE m.channel_id = c.id
                       UNION ALL
                       SELECT c.measurement_point_id, tstzrange(NULL, NULL)
                       WHERE c.measurement_point_id IS NOT NULL
                         AND NOT EXISTS (SELECT 1 FROM channel_mapping m WHERE m.channel_id = c.id)
                   ) sp
                   JOIN calibration k ON k.measurement_point_id = sp.measurement_point_id
                   WHERE sp.r * tstzrange(k.valid_from, k.valid_to) @> r.time
                   ORDER BY lower(sp.r * tstzrange(k.valid_from, k.valid_to)) NULLS FIRST, k.id
                   LIMIT 1
               ), r.value)
           ELSE r.value
       END AS value_calibrated,
       -- core.flags.flag_mask: live (not deleted) flags of the station over [start, end)
       -- that cover the whole station or list the channel. NULL: not flagged.
       (SELECT string_agg(DISTINCT f.category, ', ' ORDER BY f.category)
        FROM flag f
        WHERE f.station_id = c.station_id AND f.deleted_at IS NULL
          AND f.start_time <= r.time AND f.end_time > r.time
          AND (f.whole_station OR EXISTS (
               SELECT 1 FROM flag_channel fc WHERE fc.flag_id = f.id AND fc.channel_id = c.id))
       ) AS flag
FROM reading r
JOIN channel c ON c.id = r.channel_id
JOIN station s ON s.id = c.station_id
LEFT JOIN measurement_point mp ON mp.id = c.measurement_point_id;

-- Hourly and daily rollups of the values as logged (not recalibrated, flagged values
-- included), whatever the storage level built them (tables or continuous aggregates).
CREATE VIEW tidy.readings_1h AS
SELECT h.bucket AS time, s.name AS station, c.column_name AS channel,
       coalesce(mp.measurement_type, 'unknown') AS measurement_type, mp.height_m, mp.orientation_deg,
       c.statistic, coalesce(nullif(mp.unit, ''), c.unit) AS unit,
       h.n, h.mean, h.min, h.max
FROM reading_1h h
JOIN channel c ON c.id = h.channel_id
JOIN station s ON s.id = c.station_id
LEFT JOIN measurement_point mp ON mp.id = c.measurement_point_id;

CREATE VIEW tidy.readings_1d AS
SELECT d.bucket AS time, s.name AS station, c.column_name AS channel,
       coalesce(mp.measurement_type, 'unknown') AS measurement_type, mp.height_m, mp.orientation_deg,
       c.statistic, coalesce(nullif(mp.unit, ''), c.unit) AS unit,
       d.n, d.mean, d.min, d.max
FROM reading_1d d
JOIN channel c ON c.id = d.channel_id
JOIN station s ON s.id = c.station_id
LEFT JOIN measurement_point mp ON mp.id = c.measurement_point_id;

-- Flags as they apply: one row per live flag and channel it covers (a whole-station flag
-- covers every channel of the station, also channels added later).
CREATE VIEW tidy.flags AS
SELECT s.name AS station, c.column_name AS channel, f.start_time, f.end_time, f.category, f.note,
       f.source, f.id AS flag_id
FROM flag f
JOIN station s ON s.id = f.station_id
JOIN channel c ON c.station_id = f.station_id
WHERE f.deleted_at IS NULL
  AND (f.whole_station OR EXISTS (SELECT 1 FROM flag_channel fc WHERE fc.flag_id = f.id AND fc.channel_id = c.id));
