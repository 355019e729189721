-- Storage levels 0 and 1: hourly and daily rollups are tables that
-- core.rollups.refresh_rollups() recomputes for the time range an import touched.
-- sd of the readings in a bucket: sqrt((sumsq - n*mean^2) / (n - 1)).

CREATE TABLE reading_1h (
    channel_id integer NOT NULL,
    bucket     timestamptz NOT NULL,
    n          bigint NOT NULL,
    mean       double precision,
    min        double precision,
    max        double precision,
    sumsq      double precision,
    PRIMARY KEY (channel_id, bucket)
);

CREATE TABLE reading_1d (LIKE reading_1h INCLUDING ALL);
