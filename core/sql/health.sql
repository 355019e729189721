-- Named queries of core.health (the station health page) and of core.series (flagged buckets).
-- Values only as %(name)s parameters; identifiers only through psycopg.sql.Identifier.
-- Every query reads the rollups (reading_1h, reading_1d) or probes `reading` by its
-- (channel_id, time) key over short ranges: none scans a channel's whole history.

-- name: heatmap_days
-- Each UTC day in [%(first_day)s, %(end_day)s) and the readings expected that day per channel:
-- 86400 s / the shortest logging interval of the station's loggers in force that day (600 s
-- when none is known).
SELECT d.day, 86400.0 / coalesce(min(l.interval_s), 600) AS expected
FROM generate_series(%(first_day)s::timestamptz, %(end_day)s::timestamptz - INTERVAL '1 day',
                     INTERVAL '1 day') AS d(day)
LEFT JOIN logger l
  ON l.station_id = %(station_id)s
 AND (l.valid_from IS NULL OR l.valid_from < d.day + INTERVAL '1 day')
 AND (l.valid_to IS NULL OR l.valid_to > d.day)
GROUP BY d.day
ORDER BY d.day;

-- name: heatmap_counts
-- The readings stored per channel of the station and UTC day of [%(first_day)s, %(end_day)s),
-- from the daily rollup: one row per channel, its counts as an array in day order (0 when none).
WITH day AS (
    SELECT d AS day
    FROM generate_series(%(first_day)s::timestamptz, %(end_day)s::timestamptz - INTERVAL '1 day',
                         INTERVAL '1 day') AS g(d)
), chan AS (
    SELECT id FROM channel WHERE station_id = %(station_id)s
), stored AS (
    SELECT r.channel_id, r.bucket, r.n
    FROM reading_1d r
    WHERE r.channel_id = ANY(ARRAY(SELECT id FROM chan))
      AND r.bucket >= %(first_day)s AND r.bucket < %(end_day)s
)
SELECT c.id AS channel_id, array_agg(coalesce(s.n, 0)::bigint ORDER BY d.day) AS n
FROM chan c CROSS JOIN day d
LEFT JOIN stored s ON s.channel_id = c.id AND s.bucket = d.day
GROUP BY c.id
ORDER BY c.id;

-- name: flagged_counts
-- Readings inside the flagged pieces, per channel and UTC day. Each piece is a whole day
-- (level 1d: its daily rollup), whole hours (1h: the hourly rollups) or a part of an hour
-- (raw: the readings themselves), so a long flag costs a few rollup rows, not its readings.
-- Each piece is an index probe (LATERAL ... OFFSET 0 keeps the planner from hashing the
-- whole table instead).
WITH piece AS (
    SELECT * FROM unnest(%(channel_ids)s::integer[], %(levels)s::text[],
                         %(starts)s::timestamptz[], %(ends)s::timestamptz[]) AS p(channel_id, level, a, b)
)
SELECT p.channel_id, x.day, sum(x.n)::bigint AS n
FROM piece p
CROSS JOIN LATERAL (
    SELECT d.bucket AS day, d.n FROM reading_1d d
    WHERE p.level = '1d' AND d.channel_id = p.channel_id AND d.bucket >= p.a AND d.bucket < p.b
    UNION ALL
    SELECT date_bin(INTERVAL '1 day', h.bucket, TIMESTAMPTZ '2000-01-01 00:00+00'), h.n FROM reading_1h h
    WHERE p.level = '1h' AND h.channel_id = p.channel_id AND h.bucket >= p.a AND h.bucket < p.b
    UNION ALL
    SELECT date_bin(INTERVAL '1 day', p.a, TIMESTAMPTZ '2000-01-01 00:00+00'), count(*) FROM reading r
    WHERE p.level = 'raw' AND r.channel_id = p.channel_id AND r.time >= p.a AND r.time < p.b
      -- constant bounds too: TimescaleDB drops the chunks outside them when planning
      AND r.time >= %(lo)s AND r.time < %(hi)s
    OFFSET 0
) x
GROUP BY p.channel_id, x.day;

-- name: bucket_stats
-- Count, mean, min and max of the readings in some parts of buckets, per bucket: core.series
-- recomputes a bucket that flags cover in part from the parts they leave.
WITH piece AS (
    SELECT * FROM unnest(%(channel_ids)s::integer[], %(buckets)s::timestamptz[], %(starts)s::timestamptz[],
                         %(ends)s::timestamptz[]) AS p(channel_id, bucket, a, b)
)
SELECT p.channel_id, p.bucket AS time, sum(x.n)::bigint AS n, sum(x.total) / nullif(sum(x.n), 0) AS mean,
       min(x.lo) AS min, max(x.hi) AS max
FROM piece p
CROSS JOIN LATERAL (
    SELECT count(r.value) AS n, sum(r.value) AS total, min(r.value) AS lo, max(r.value) AS hi
    FROM reading r WHERE r.channel_id = p.channel_id AND r.time >= p.a AND r.time < p.b
    OFFSET 0
) x
GROUP BY p.channel_id, p.bucket
HAVING sum(x.n) > 0
ORDER BY 1, 2;

-- name: anemometer_pairs
-- Pairs of wind-speed averages of two different sensors at the same height (± 5 cm).
SELECT a.id AS channel_a, b.id AS channel_b, pa.height_m AS height_m
FROM channel a
JOIN measurement_point pa ON pa.id = a.measurement_point_id
JOIN channel b ON b.station_id = a.station_id AND b.id > a.id AND b.statistic = 'avg'
JOIN measurement_point pb ON pb.id = b.measurement_point_id
WHERE a.station_id = %(station_id)s AND a.statistic = 'avg'
  AND pa.measurement_type = 'wind_speed' AND pb.measurement_type = 'wind_speed'
  AND pa.id <> pb.id AND abs(pa.height_m - pb.height_m) <= 0.05
ORDER BY pa.height_m DESC, a.id, b.id;

-- name: scatter
-- Readings (or rollup means) of x and y at the same times in [start, end), every k-th pair so
-- that at most %(max_points)s are left. The table (reading, reading_1h or reading_1d) and its
-- columns are identifiers formatted in by core.health; both sides are index range scans.
SELECT time, x, y FROM (
    SELECT a.{time} AS time, a.{value} AS x, b.{value} AS y,
           row_number() OVER (ORDER BY a.{time}) - 1 AS k, count(*) OVER () AS n
    FROM {table} a JOIN {table} b ON b.channel_id = %(y_channel)s AND b.{time} = a.{time}
    WHERE a.channel_id = %(x_channel)s AND a.{time} >= %(start)s AND a.{time} < %(end)s
      AND b.{time} >= %(start)s AND b.{time} < %(end)s
) s
WHERE k %% greatest(1, ceil(n::numeric / %(max_points)s))::bigint = 0
ORDER BY time;
