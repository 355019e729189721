-- Alerts: targets, subscriptions, per-source rules, states, events and messages (core.alerts).

-- name: list_targets
SELECT * FROM alert_target ORDER BY name;

-- name: target_by_name
SELECT * FROM alert_target WHERE name = %(name)s;

-- name: insert_target
INSERT INTO alert_target (name, kind, credentials, options)
VALUES (%(name)s, %(kind)s, %(credentials)s, %(options)s)
RETURNING *;

-- name: delete_target
DELETE FROM alert_target WHERE name = %(name)s RETURNING id;

-- name: list_subscriptions
SELECT * FROM alert_subscription ORDER BY subscriber;

-- name: upsert_subscription
INSERT INTO alert_subscription (subscriber, email, targets, stations, digest_hour)
VALUES (%(subscriber)s, %(email)s, %(targets)s, %(stations)s, %(digest_hour)s)
ON CONFLICT (subscriber) DO UPDATE
SET email = EXCLUDED.email, targets = EXCLUDED.targets, stations = EXCLUDED.stations,
    digest_hour = EXCLUDED.digest_hour
RETURNING *;

-- name: delete_subscription
DELETE FROM alert_subscription WHERE subscriber = %(subscriber)s RETURNING id;

-- name: list_rules
SELECT s.name AS source, r.failures FROM alert_source_rule r JOIN source s ON s.id = r.source_id ORDER BY s.name;

-- name: set_rule
INSERT INTO alert_source_rule (source_id, failures) VALUES (%(source_id)s, %(failures)s)
ON CONFLICT (source_id) DO UPDATE SET failures = EXCLUDED.failures;

-- name: clear_rule
DELETE FROM alert_source_rule WHERE source_id = %(source_id)s;

-- name: source_health
-- Each enabled source: its failed runs in a row since its last good one (running and
-- interrupted runs say nothing), when that streak began, and its last finished run.
SELECT s.id, s.name, st.name AS station, coalesce(r.failures, %(default_failures)s) AS threshold,
       f.streak, f.first_failed_at, l.status AS last_status, l.finished_at AS last_finished_at,
       l.error_class, l.error, l.n_fetched
FROM source s
LEFT JOIN station st ON st.id = s.station_id
LEFT JOIN alert_source_rule r ON r.source_id = s.id
LEFT JOIN LATERAL (
    SELECT * FROM source_run x WHERE x.source_id = s.id AND x.status IN ('ok', 'partial', 'failed')
    ORDER BY x.id DESC LIMIT 1
) l ON true
CROSS JOIN LATERAL (
    SELECT count(*) AS streak, min(x.started_at) AS first_failed_at
    FROM source_run x
    WHERE x.source_id = s.id AND x.status = 'failed'
      AND x.id > coalesce((SELECT max(y.id) FROM source_run y
                           WHERE y.source_id = s.id AND y.status IN ('ok', 'partial')), 0)
) f
WHERE s.enabled
ORDER BY s.name;

-- name: states
SELECT * FROM alert_state ORDER BY subject_kind, subject_name;

-- name: insert_state
-- The first state of a subject; nothing when another evaluation recorded one first.
INSERT INTO alert_state (subject_kind, subject_id, subject_name, state, detail, since)
VALUES (%(kind)s, %(id)s, %(name)s, %(state)s, %(detail)s, %(at)s)
ON CONFLICT (subject_kind, subject_id) DO NOTHING
RETURNING subject_id;

-- name: change_state
-- Only from the state this evaluation read: a concurrent evaluation that changed it first wins.
UPDATE alert_state SET state = %(state)s, detail = %(detail)s, since = %(at)s, subject_name = %(name)s
WHERE subject_kind = %(kind)s AND subject_id = %(id)s AND state = %(old)s
RETURNING subject_id;

-- name: insert_event
INSERT INTO alert_event (at, subject_kind, subject_id, subject_name, station, old_state, new_state, text)
VALUES (%(at)s, %(kind)s, %(id)s, %(name)s, %(station)s, %(old)s, %(state)s, %(text)s)
RETURNING id;

-- name: events_since
SELECT * FROM alert_event WHERE at > %(since)s AND at <= %(until)s ORDER BY at, id;

-- name: insert_message
INSERT INTO alert_message (kind, event_id, target_id, target_name, recipient, subject, body, fields,
                           max_attempts, next_attempt_at, created_at)
VALUES (%(kind)s, %(event_id)s, %(target_id)s, %(target_name)s, %(recipient)s, %(subject)s, %(body)s,
        %(fields)s, %(max_attempts)s, %(at)s, %(at)s)
RETURNING id;

-- name: claim_message
-- One message due for sending, locked while it is sent (another worker skips it).
SELECT m.*, t.kind AS target_kind, t.credentials, t.options
FROM alert_message m LEFT JOIN alert_target t ON t.id = m.target_id
WHERE m.status = 'pending' AND m.next_attempt_at <= %(now)s
  AND (%(ids)s::bigint[] IS NULL OR m.id = ANY(%(ids)s))
ORDER BY m.next_attempt_at, m.id
LIMIT 1
FOR UPDATE OF m SKIP LOCKED;

-- name: message_sent
UPDATE alert_message SET status = 'sent', attempts = attempts + 1, sent_at = %(now)s, error = NULL
WHERE id = %(id)s;

-- name: message_failed
-- Tried again after the wait, or failed for good after its last attempt.
UPDATE alert_message
SET attempts = attempts + 1, error = %(error)s,
    status = CASE WHEN attempts + 1 >= max_attempts THEN 'failed' ELSE 'pending' END,
    next_attempt_at = %(now)s + make_interval(secs => %(wait_s)s * 2 ^ attempts)
WHERE id = %(id)s
RETURNING status;

-- name: messages
SELECT id, created_at, kind, target_name, recipient, subject, status, attempts, sent_at, error
FROM alert_message
WHERE (%(ids)s::bigint[] IS NULL OR id = ANY(%(ids)s))
ORDER BY id DESC
LIMIT %(limit)s;

-- name: claim_digest
-- Marks the subscriber's digest of a local day as queued (once, whatever the workers).
UPDATE alert_subscription SET digest_sent_on = %(day)s
WHERE id = %(id)s AND digest_sent_on IS DISTINCT FROM %(day)s
RETURNING id;
