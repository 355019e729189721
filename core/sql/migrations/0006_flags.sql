-- Flags and suggested flags (core.flags), and the quality-check requests of the worker (core.qc_runner).
--
-- A flag says that readings of some channels over [start_time, end_time) are bad or special
-- (icing, maintenance, ...). Flags are applied when data is read or exported; readings are never
-- changed. A flag is never deleted: deleting sets deleted_by/deleted_at, and every change is
-- recorded in `audit`. (The columns are start_time/end_time, not start/end: END is a reserved word.)

CREATE TABLE flag (
    id            integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    station_id    integer NOT NULL REFERENCES station ON DELETE CASCADE,
    start_time    timestamptz NOT NULL,
    end_time      timestamptz NOT NULL,
    -- true: the flag covers every channel of the station, also channels added later;
    -- flag_channel then lists the channels the station had when the flag was made.
    whole_station boolean NOT NULL DEFAULT false,
    category      text NOT NULL CHECK (category IN (
                      'icing', 'maintenance', 'tower shadow', 'faulty sensor', 'suspect', 'other')),
    note          text NOT NULL DEFAULT '',
    source        text NOT NULL DEFAULT 'manual' CHECK (source IN ('manual', 'rule')),
    rule          text,  -- the quality check that suggested it (source = 'rule')
    author        text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    deleted_by    text,
    deleted_at    timestamptz,
    CHECK (end_time > start_time),
    CHECK (source = 'manual' OR rule IS NOT NULL),
    CHECK ((deleted_by IS NULL) = (deleted_at IS NULL))
);
-- "flags of station S overlapping [a, b)": start_time < b AND end_time > a.
CREATE INDEX flag_station_time_idx ON flag (station_id, start_time, end_time);
CREATE INDEX flag_period_idx ON flag USING gist (tstzrange(start_time, end_time, '[)'));

-- The channels a flag applies to.
CREATE TABLE flag_channel (
    flag_id    integer NOT NULL REFERENCES flag ON DELETE CASCADE,
    channel_id integer NOT NULL REFERENCES channel ON DELETE CASCADE,
    PRIMARY KEY (flag_id, channel_id)
);
-- "flags of channel X": flag_channel by channel, then flag by id.
CREATE INDEX flag_channel_channel_idx ON flag_channel (channel_id, flag_id);

-- What the automatic checks (core.qc) found, for an analyst to accept (it becomes a flag)
-- or dismiss. Re-running the checks over a range replaces the open suggestions of that
-- range; decided ones stay, and what they cover is not suggested again.
CREATE TABLE suggested_flag (
    id          integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    station_id  integer NOT NULL REFERENCES station ON DELETE CASCADE,
    rule        text NOT NULL,  -- gross_range, flat_line, icing, pair_ratio, dead, gap, duplicates
    severity    text NOT NULL CHECK (severity IN ('suspect', 'fail')),
    start_time  timestamptz NOT NULL,
    end_time    timestamptz NOT NULL,
    message     text NOT NULL DEFAULT '',
    channel_ids integer[] NOT NULL DEFAULT '{}',  -- sorted; empty for time-axis findings (gaps)
    status      text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'accepted', 'dismissed')),
    decided_by  text,
    decided_at  timestamptz,
    flag_id     integer REFERENCES flag,  -- the flag an accepted suggestion became (none for gaps)
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CHECK (end_time > start_time),
    CHECK ((status = 'open') = (decided_at IS NULL))
);
CREATE INDEX suggested_flag_station_idx ON suggested_flag (station_id, status, start_time);
-- One open suggestion per rule, channels and period (a re-run never duplicates one).
CREATE UNIQUE INDEX suggested_flag_open_key ON suggested_flag (station_id, rule, channel_ids, start_time, end_time)
    WHERE status = 'open';

-- Time ranges waiting for the checks (one row per imported file). The worker's run_qc job
-- takes all of a station's rows at once, so a burst of imports gives one run.
CREATE TABLE qc_request (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    station_id   integer NOT NULL REFERENCES station ON DELETE CASCADE,
    start_time   timestamptz NOT NULL,
    end_time     timestamptz NOT NULL,
    requested_at timestamptz NOT NULL DEFAULT now(),
    CHECK (end_time > start_time)
);
CREATE INDEX qc_request_station_idx ON qc_request (station_id);
