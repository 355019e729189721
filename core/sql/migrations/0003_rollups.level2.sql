-- Storage level 2 (TimescaleDB community edition, TSL licence): compress old reading
-- chunks; rollups are hierarchical continuous aggregates (1 h from
-- readings, 1 d from 1 h), materialized only, refreshed by the worker for the range
-- each import touched (no refresh policy), so they hold what level 0 would hold.
-- Buckets are UTC hours and days, the same as date_bin() at level 0.

ALTER TABLE reading SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'channel_id',
    timescaledb.compress_orderby = 'time'
);
-- Late files still backfill: TimescaleDB >= 2.11 accepts INSERT .. ON CONFLICT into
-- compressed chunks.
SELECT add_compression_policy('reading', INTERVAL '90 days');

CREATE MATERIALIZED VIEW reading_1h
WITH (timescaledb.continuous, timescaledb.materialized_only = true) AS
SELECT channel_id,
       time_bucket(INTERVAL '1 hour', time) AS bucket,
       count(value)::bigint AS n,
       avg(value) AS mean,
       min(value) AS min,
       max(value) AS max,
       sum(value * value) AS sumsq
FROM reading
GROUP BY channel_id, time_bucket(INTERVAL '1 hour', time)
WITH NO DATA;

CREATE MATERIALIZED VIEW reading_1d
WITH (timescaledb.continuous, timescaledb.materialized_only = true) AS
SELECT channel_id,
       time_bucket(INTERVAL '1 day', bucket) AS bucket,
       sum(n)::bigint AS n,
       sum(mean * n) / nullif(sum(n), 0) AS mean,
       min(min) AS min,
       max(max) AS max,
       sum(sumsq) AS sumsq
FROM reading_1h
GROUP BY channel_id, time_bucket(INTERVAL '1 day', bucket)
WITH NO DATA;
