-- Sign-ins whose password is being checked, per user name as typed (core.signin). A
-- password is checked only while the name's failures in a row plus its checks under way
-- stay under STATIONMANAGER_SIGN_IN_MAX_FAILURES: attempts sent at once cannot check more
-- wrong passwords than the lock allows, and right ones sent at once all sign in. A check
-- still here long after it started (its process stopped) is counted as a failure.
CREATE TABLE sign_in_check (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name       text NOT NULL,
    started_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX sign_in_check_name ON sign_in_check (name);
