-- Alerts: messages by email and webhook when a station becomes late, silent or faulty, or
-- a source fails N runs in a row, and when it recovers (core.alerts). Secrets are NEVER
-- stored here: a target names a section of HOME/secrets.toml (the SMTP login, the webhook
-- URL, which embeds a token).

CREATE TABLE alert_target (
    id           integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name         text NOT NULL UNIQUE CHECK (name ~ '\S'),
    kind         text NOT NULL CHECK (kind IN ('email', 'webhook')),
    credentials  text,                   -- a section name in the secrets, not a secret
    options      jsonb NOT NULL DEFAULT '{}',  -- email: host, port, security, from, ca_file
    created_at   timestamptz NOT NULL DEFAULT now(),
    CHECK (kind = 'email' OR credentials IS NOT NULL)   -- a webhook's URL is a secret
);

-- Who hears about what: a user (address from the user file) or a typed address, through
-- some targets, for every station (stations NULL) or a list; digest_hour: a daily summary
-- at that hour (STATIONMANAGER_ALERT_TIME_ZONE), NULL for none.
CREATE TABLE alert_subscription (
    id              integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    subscriber      text NOT NULL UNIQUE CHECK (subscriber ~ '\S'),  -- user name or address
    email           text,                -- typed address; NULL: the user's, from the user file
    targets         text[] NOT NULL CHECK (cardinality(targets) > 0),
    stations        text[],              -- NULL: every station (and every source)
    digest_hour     integer CHECK (digest_hour BETWEEN 0 AND 23),
    digest_sent_on  date,                -- the local day of the last digest queued
    created_at      timestamptz NOT NULL DEFAULT now()
);

-- Per source: how many failed runs in a row make it "failing" (else the setting).
CREATE TABLE alert_source_rule (
    source_id  integer PRIMARY KEY REFERENCES source ON DELETE CASCADE,
    failures   integer NOT NULL CHECK (failures > 0)
);

-- The state last alerted for each station and source: a message goes out only when the
-- state evaluated differs from it, in the transaction that changes it.
CREATE TABLE alert_state (
    subject_kind  text NOT NULL CHECK (subject_kind IN ('station', 'source')),
    subject_id    integer NOT NULL,
    subject_name  text NOT NULL,
    state         text NOT NULL,         -- station: ok, late, silent, faulty, empty; source: ok, failing
    detail        text,
    since         timestamptz NOT NULL,
    PRIMARY KEY (subject_kind, subject_id)
);

-- Every change of state (the digest's "what changed").
CREATE TABLE alert_event (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at            timestamptz NOT NULL,
    subject_kind  text NOT NULL,
    subject_id    integer NOT NULL,
    subject_name  text NOT NULL,
    station       text,                  -- the station concerned (a source's own station)
    old_state     text,
    new_state     text NOT NULL,
    text          text NOT NULL
);
CREATE INDEX alert_event_at_idx ON alert_event (at);

-- The alert log, which is also the outbox: a message is written with the change of state
-- and sent (retried with backoff) by the worker.
CREATE TABLE alert_message (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    created_at       timestamptz NOT NULL DEFAULT now(),
    kind             text NOT NULL CHECK (kind IN ('alert', 'recovered', 'digest', 'test')),
    event_id         bigint REFERENCES alert_event ON DELETE SET NULL,
    target_id        integer REFERENCES alert_target ON DELETE SET NULL,
    target_name      text NOT NULL,
    recipient        text,               -- an email address; NULL for a webhook
    subject          text NOT NULL,
    body             text NOT NULL,
    fields           jsonb NOT NULL DEFAULT '{}',
    status           text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'failed')),
    attempts         integer NOT NULL DEFAULT 0,
    max_attempts     integer NOT NULL DEFAULT 1 CHECK (max_attempts > 0),
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    sent_at          timestamptz,
    error            text
);
CREATE INDEX alert_message_due_idx ON alert_message (next_attempt_at) WHERE status = 'pending';
CREATE INDEX alert_message_created_idx ON alert_message (created_at DESC);
