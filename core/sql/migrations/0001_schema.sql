-- StationManager base schema: metadata, source files, readings, audit.
-- Times are timestamptz in UTC; a reading's time marks the START of its averaging period.

CREATE TABLE station (
    id            integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name          text NOT NULL UNIQUE,
    latitude      double precision,
    longitude     double precision,
    elevation_m   double precision,
    kind          text NOT NULL DEFAULT 'met mast',
    notes         text NOT NULL DEFAULT '',
    created_at    timestamptz NOT NULL DEFAULT now()
);

-- A logger configuration, valid over [valid_from, valid_to).
CREATE TABLE logger (
    id                 integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    station_id         integer NOT NULL REFERENCES station ON DELETE CASCADE,
    oem                text NOT NULL DEFAULT '',
    model              text NOT NULL DEFAULT '',
    serial             text NOT NULL DEFAULT '',
    utc_offset_minutes integer NOT NULL DEFAULT 0,
    timestamp_is_end   boolean NOT NULL DEFAULT true,
    interval_s         integer NOT NULL DEFAULT 600 CHECK (interval_s > 0),
    valid_from         timestamptz,
    valid_to           timestamptz,
    CHECK (valid_to IS NULL OR valid_from IS NULL OR valid_to > valid_from)
);
CREATE INDEX logger_serial_idx ON logger (serial);
CREATE INDEX logger_station_idx ON logger (station_id);

-- A sensor position on the mast.
CREATE TABLE measurement_point (
    id               integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    station_id       integer NOT NULL REFERENCES station ON DELETE CASCADE,
    name             text NOT NULL,
    measurement_type text NOT NULL DEFAULT 'unknown',
    height_m         double precision,
    orientation_deg  double precision,
    unit             text NOT NULL DEFAULT '',
    sensor           text NOT NULL DEFAULT '',
    notes            text NOT NULL DEFAULT '',
    UNIQUE (station_id, name)
);

-- One column of a logger file. Unmapped columns are kept as channels too (mapped = false).
CREATE TABLE channel (
    id                   integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    station_id           integer NOT NULL REFERENCES station ON DELETE CASCADE,
    column_name          text NOT NULL,
    statistic            text NOT NULL DEFAULT 'unknown'
                         CHECK (statistic IN ('avg', 'sd', 'min', 'max', 'gust', 'count', 'sample', 'sum', 'unknown')),
    measurement_point_id integer REFERENCES measurement_point ON DELETE SET NULL,
    unit                 text NOT NULL DEFAULT '',
    mapped               boolean NOT NULL DEFAULT false,
    created_at           timestamptz NOT NULL DEFAULT now(),
    UNIQUE (station_id, column_name)
);

-- Slope/offset per measurement point over [valid_from, valid_to).
CREATE TABLE calibration (
    id                   integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    measurement_point_id integer NOT NULL REFERENCES measurement_point ON DELETE CASCADE,
    valid_from           timestamptz,
    valid_to             timestamptz,
    logger_slope         double precision NOT NULL DEFAULT 1 CHECK (logger_slope <> 0),
    logger_offset        double precision NOT NULL DEFAULT 0,
    cal_slope            double precision NOT NULL DEFAULT 1,
    cal_offset           double precision NOT NULL DEFAULT 0,
    certificate          text NOT NULL DEFAULT '',
    created_at           timestamptz NOT NULL DEFAULT now()
);

-- Every file received; the original is kept under HOME/files/<sha256[:2]>/<sha256>.
CREATE TABLE source_file (
    id             integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sha256         text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    original_name  text NOT NULL,
    size_bytes     bigint NOT NULL,
    origin         text NOT NULL DEFAULT 'cli',          -- cli, upload, inbox, demo
    received_by    text NOT NULL DEFAULT '',
    station_id     integer REFERENCES station ON DELETE SET NULL,
    format         text,
    status         text NOT NULL DEFAULT 'queued'
                   CHECK (status IN ('queued', 'importing', 'imported', 'failed', 'duplicate', 'needs station')),
    duplicate_of   integer REFERENCES source_file,
    error          text,
    error_line     integer,
    n_rows         integer,
    n_readings     bigint,
    n_changed      bigint,
    first_time     timestamptz,
    last_time      timestamptz,
    attempts       integer NOT NULL DEFAULT 0,
    received_at    timestamptz NOT NULL DEFAULT now(),
    started_at     timestamptz,
    finished_at    timestamptz
);
-- One live record per content; later copies are recorded as 'duplicate'.
CREATE UNIQUE INDEX source_file_sha256_live ON source_file (sha256) WHERE status <> 'duplicate';
CREATE INDEX source_file_station_idx ON source_file (station_id, received_at DESC);
CREATE INDEX source_file_status_idx ON source_file (status);

-- The readings. No foreign keys here: they would cost a trigger per row on COPY;
-- the ingest code only writes channel ids it has just looked up.
CREATE TABLE reading (
    channel_id     integer NOT NULL,
    time           timestamptz NOT NULL,
    value          double precision NOT NULL,
    source_file_id integer NOT NULL,
    PRIMARY KEY (channel_id, time)
);

CREATE TABLE audit (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at        timestamptz NOT NULL DEFAULT now(),
    actor     text NOT NULL,
    action    text NOT NULL,
    entity    text NOT NULL,
    entity_id bigint,
    details   jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_entity_idx ON audit (entity, entity_id);
