-- Named queries of core.api_tokens (tokens of the HTTP API).

-- name: insert_token
INSERT INTO api_token (name, role, token_sha256, created_by)
VALUES (%(name)s, %(role)s, %(token_sha256)s, %(actor)s)
RETURNING id, name, role, created_by, created_at;

-- name: live_token_by_name
SELECT id FROM api_token WHERE name = %(name)s AND revoked_at IS NULL;

-- name: token_by_hash
SELECT id, name, role, revoked_at, last_used_at FROM api_token WHERE token_sha256 = %(token_sha256)s;

-- name: touch_token
-- Record a use, at most once a minute (a busy client does not write on every request).
UPDATE api_token SET last_used_at = clock_timestamp()
WHERE id = %(id)s AND (last_used_at IS NULL OR last_used_at < clock_timestamp() - interval '1 minute');

-- name: revoke_token
UPDATE api_token SET revoked_at = clock_timestamp(), revoked_by = %(actor)s
WHERE name = %(name)s AND revoked_at IS NULL
RETURNING id;

-- name: list_tokens
SELECT id, name, role, created_by, created_at, last_used_at, revoked_by, revoked_at
FROM api_token
WHERE %(revoked)s OR revoked_at IS NULL
ORDER BY name, created_at;
