-- Sources: where logger files wait (a folder, an SFTP/FTP(S)/HTTP(S) server, an S3 bucket).
-- The worker fetches new or changed files from each enabled source on its schedule and
-- receives them like any other file (core.sources). Credentials are NEVER stored here:
-- a source names a section of HOME/secrets.toml (or STATIONMANAGER_SECRET_* variables).

CREATE TABLE source (
    id               integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name             text NOT NULL UNIQUE CHECK (name ~ '\S'),
    kind             text NOT NULL CHECK (kind IN ('folder', 'sftp', 'ftp', 'ftps', 'http', 'https', 's3')),
    url              text NOT NULL CHECK (url !~ '://[^/@]*:[^/@]*@'),  -- never a password
    credentials      text,                    -- a section name in the secrets, not a secret
    station_id       integer REFERENCES station ON DELETE SET NULL,  -- NULL: routed like the inbox
    include          text[] NOT NULL DEFAULT '{*}',
    exclude          text[] NOT NULL DEFAULT '{}',
    every_minutes    integer NOT NULL DEFAULT 60 CHECK (every_minutes > 0),
    since            timestamptz,             -- files modified before this are left alone
    after_fetch      text NOT NULL DEFAULT 'keep' CHECK (after_fetch IN ('keep', 'move', 'delete')),
    move_to          text,
    max_files        integer CHECK (max_files > 0),     -- NULL: the setting's default
    max_bytes        bigint CHECK (max_bytes > 0),
    timeout_s        real CHECK (timeout_s > 0),
    connections      integer CHECK (connections > 0),
    options          jsonb NOT NULL DEFAULT '{}', -- per kind: endpoint_url, region, ca_file, passive
    enabled          boolean NOT NULL DEFAULT true,
    host_key         text,                    -- accepted SFTP host key ("ssh-ed25519 AAAA…")
    pending_host_key text,                    -- offered by the server, waiting for an admin
    blocked          text,                    -- why the source is stopped until an admin acts
    queued_at        timestamptz,             -- when its last scheduled run was queued
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    CHECK ((after_fetch = 'move') = (move_to IS NOT NULL))
);

-- What each source has listed and fetched, per remote path. A file is fetched when its
-- size or modification time differs from what was fetched last, once it has settled; the
-- fetched_* columns change only in the transaction that receives the file.
CREATE TABLE source_remote_file (
    source_id       integer NOT NULL REFERENCES source ON DELETE CASCADE,
    path            text NOT NULL,           -- relative to the source's URL
    listed_size     bigint,
    listed_mtime    timestamptz,
    listed_at       timestamptz NOT NULL DEFAULT now(),
    fetched_size    bigint,
    fetched_mtime   timestamptz,
    fetched_at      timestamptz,
    sha256          text,
    source_file_id  integer REFERENCES source_file ON DELETE SET NULL,
    PRIMARY KEY (source_id, path)
);
CREATE INDEX source_remote_file_file_idx ON source_remote_file (source_file_id);

-- One row per run of a source, also failed and interrupted ones.
CREATE TABLE source_run (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source_id    integer NOT NULL REFERENCES source ON DELETE CASCADE,
    trigger      text NOT NULL DEFAULT 'schedule',   -- schedule, cli, test
    status       text NOT NULL DEFAULT 'running'
                 CHECK (status IN ('running', 'ok', 'partial', 'failed', 'interrupted')),
    started_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at  timestamptz,
    n_listed     integer NOT NULL DEFAULT 0,
    n_new        integer NOT NULL DEFAULT 0,         -- new or changed, settled or not
    n_waiting    integer NOT NULL DEFAULT 0,         -- still being written, or over a limit
    n_fetched    integer NOT NULL DEFAULT 0,
    n_failed     integer NOT NULL DEFAULT 0,
    bytes        bigint NOT NULL DEFAULT 0,
    error_class  text,                               -- authentication failed, timeout, …
    error        text,                               -- in plain words, without secrets
    file_ids     integer[] NOT NULL DEFAULT '{}'     -- the files received by this run
);
CREATE INDEX source_run_source_idx ON source_run (source_id, started_at DESC);
