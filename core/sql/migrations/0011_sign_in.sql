-- Sign-in state shared by every app process and kept across restarts (core.sessions,
-- core.signin). Users themselves stay in HOME/users.yaml.

-- One row per sign-in (a password accepted). The browser's remember-me cookie carries the
-- session's random id inside its signed token; only its sha256 is stored here. Every run of
-- the app checks the row: ended (log out, `stationmanager users logout`, the user removed or
-- given a new password) or idle longer than STATIONMANAGER_SESSION_IDLE_MINUTES means
-- signed out, whatever the cookie says.
CREATE TABLE sign_in_session (
    id           text PRIMARY KEY,
    username     text NOT NULL,
    password_fp  text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    last_seen_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    ended_at     timestamptz,
    end_reason   text
);
CREATE INDEX sign_in_session_live ON sign_in_session (username) WHERE ended_at IS NULL;

-- Failed sign-ins in a row per user name as typed, known or not (an unknown name locks the
-- same way, so a lock tells nothing of who exists).
CREATE TABLE sign_in_failure (
    name            text PRIMARY KEY,
    failures        integer NOT NULL DEFAULT 0,
    locked_until    timestamptz,
    last_attempt_at timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- Recent failed sign-ins per client address: each attempt from there waits longer.
CREATE TABLE sign_in_client (
    client          text PRIMARY KEY,
    failures        integer NOT NULL DEFAULT 0,
    last_failure_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
