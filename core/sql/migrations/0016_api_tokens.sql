-- Tokens of the HTTP API (`stationmanager tokens add NAME --role …`). Only the sha256 of a
-- token is stored: the token itself (256 random bits) is shown once, when it is made. A
-- revoked token is kept (who revoked it and when) and no longer accepted; its name may be
-- given to a new token. last_used_at is updated at most once a minute.
CREATE TABLE api_token (
    id           bigserial PRIMARY KEY,
    name         text NOT NULL,
    role         text NOT NULL CHECK (role IN ('viewer', 'analyst', 'admin')),
    token_sha256 text NOT NULL UNIQUE,
    created_by   text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_by   text,
    revoked_at   timestamptz
);
CREATE UNIQUE INDEX api_token_live_name ON api_token (name) WHERE revoked_at IS NULL;
