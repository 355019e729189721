-- Exports built on request by the worker (core.exports).
--
-- A row is one request. `params` are the normalised options (core.exports.ExportRequest) and
-- `params_hash` their sha256; `inputs` records the versions of what the file was built from
-- (imported files, flags, calibrations, metadata, software) and `inputs_key` their hash. A new
-- request whose params_hash and inputs_key equal those of a finished export reuses its file:
-- the new row is 'done' at once, with `reused_from` pointing at the export that built it.
-- Files live under HOME/exports/ (`file_path` is relative to it); after
-- STATIONMANAGER_EXPORT_RETENTION_DAYS they are deleted and the rows kept as 'expired'.

CREATE TABLE export (
    id            integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    station_id    integer NOT NULL REFERENCES station ON DELETE CASCADE,
    format        text NOT NULL CHECK (format IN ('windographer', 'csv', 'zip', 'parquet')),
    params        jsonb NOT NULL,
    params_hash   text NOT NULL,
    inputs        jsonb NOT NULL DEFAULT '{}',
    inputs_key    text NOT NULL,
    status        text NOT NULL DEFAULT 'queued'
                  CHECK (status IN ('queued', 'running', 'done', 'failed', 'expired')),
    progress      double precision NOT NULL DEFAULT 0 CHECK (progress >= 0 AND progress <= 1),
    message       text NOT NULL DEFAULT '',
    file_name     text,
    file_path     text,
    size_bytes    bigint,
    n_rows        bigint,
    n_values      bigint,
    provenance    jsonb,
    requested_by  text NOT NULL,
    requested_at  timestamptz NOT NULL DEFAULT now(),
    started_at    timestamptz,
    finished_at   timestamptz,
    expired_at    timestamptz,
    error         text,
    attempts      integer NOT NULL DEFAULT 0,
    reused_from   integer REFERENCES export ON DELETE SET NULL,
    CHECK (status <> 'done' OR file_path IS NOT NULL)
);
CREATE INDEX export_station_idx ON export (station_id, requested_at DESC);
CREATE INDEX export_requested_idx ON export (requested_at DESC);
-- "a finished export with the same parameters and inputs"
CREATE INDEX export_reuse_idx ON export (params_hash, inputs_key) WHERE status IN ('queued', 'running', 'done');
CREATE INDEX export_file_idx ON export (file_path) WHERE status = 'done';
