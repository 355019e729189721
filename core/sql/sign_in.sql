-- Named queries of core.sessions and core.signin (sign-in sessions, failed sign-ins, checks under way).

-- name: start_session
INSERT INTO sign_in_session (id, username, password_fp)
VALUES (%(id)s, %(username)s, %(password_fp)s);

-- name: touch_session
-- The session is live: not ended, same user and password, used within the idle time and
-- younger than the cookie's lifetime. Marks it used now.
UPDATE sign_in_session SET last_seen_at = clock_timestamp()
WHERE id = %(id)s AND ended_at IS NULL
  AND username = %(username)s AND password_fp = %(password_fp)s
  AND last_seen_at > clock_timestamp() - make_interval(secs => %(idle_s)s)
  AND created_at > clock_timestamp() - make_interval(secs => %(max_age_s)s)
RETURNING id;

-- name: session
SELECT username, password_fp, ended_at, end_reason,
       last_seen_at <= clock_timestamp() - make_interval(secs => %(idle_s)s) AS idle,
       created_at <= clock_timestamp() - make_interval(secs => %(max_age_s)s) AS too_old
FROM sign_in_session WHERE id = %(id)s;

-- name: end_session
UPDATE sign_in_session SET ended_at = clock_timestamp(), end_reason = %(reason)s
WHERE id = %(id)s AND ended_at IS NULL;

-- name: end_user_sessions
UPDATE sign_in_session SET ended_at = clock_timestamp(), end_reason = %(reason)s
WHERE username = %(username)s AND ended_at IS NULL
RETURNING id;

-- name: live_sessions
SELECT username, count(*) AS sessions, max(last_seen_at) AS last_seen_at
FROM sign_in_session
WHERE ended_at IS NULL AND last_seen_at > clock_timestamp() - make_interval(secs => %(idle_s)s)
GROUP BY username ORDER BY username;

-- name: purge_sessions
-- Sessions ended (or abandoned) more than 30 days ago.
DELETE FROM sign_in_session
WHERE coalesce(ended_at, last_seen_at) < clock_timestamp() - interval '30 days';

-- name: failure_row
-- The name's row (made if missing), locked until the transaction ends: the attempts of one
-- name take their turn and give their answer one by one.
INSERT INTO sign_in_failure AS f (name) VALUES (%(name)s)
ON CONFLICT (name) DO UPDATE SET name = f.name
RETURNING failures, locked_until, last_attempt_at, clock_timestamp() AS now;

-- name: drop_abandoned
-- Checks of the name started more than abandoned_s ago: their process stopped before the answer.
WITH gone AS (
    DELETE FROM sign_in_check
    WHERE name = %(name)s AND started_at < clock_timestamp() - make_interval(secs => %(abandoned_s)s)
    RETURNING id
)
SELECT count(*) AS n FROM gone;

-- name: checks_under_way
SELECT count(*) AS n FROM sign_in_check WHERE name = %(name)s;

-- name: start_check
INSERT INTO sign_in_check (name) VALUES (%(name)s) RETURNING id;

-- name: end_check
DELETE FROM sign_in_check WHERE id = %(id)s RETURNING id;

-- name: drop_checks
DELETE FROM sign_in_check WHERE name = %(name)s;

-- name: purge_checks
DELETE FROM sign_in_check WHERE started_at < clock_timestamp() - interval '1 day';

-- name: set_failures
UPDATE sign_in_failure
SET failures = %(failures)s, locked_until = %(locked_until)s, last_attempt_at = %(now)s
WHERE name = %(name)s;

-- name: clear_failures
DELETE FROM sign_in_failure WHERE name = %(name)s RETURNING locked_until;

-- name: purge_failures
DELETE FROM sign_in_failure
WHERE last_attempt_at < clock_timestamp() - interval '1 day'
  AND (locked_until IS NULL OR locked_until < clock_timestamp());

-- name: client_failures
-- Failed sign-ins from the client within the window (older ones are forgotten).
SELECT CASE WHEN last_failure_at > clock_timestamp() - make_interval(secs => %(window_s)s)
            THEN failures ELSE 0 END AS failures
FROM sign_in_client WHERE client = %(client)s;

-- name: client_failed
INSERT INTO sign_in_client AS c (client, failures) VALUES (%(client)s, 1)
ON CONFLICT (client) DO UPDATE SET
    failures = CASE WHEN c.last_failure_at > clock_timestamp() - make_interval(secs => %(window_s)s)
                    THEN c.failures + 1 ELSE 1 END,
    last_failure_at = clock_timestamp();

-- name: purge_clients
DELETE FROM sign_in_client
WHERE last_failure_at < clock_timestamp() - make_interval(secs => %(window_s)s);
