-- Named queries of core.explore.saved (the Explore page's saved queries).

-- name: save_query
-- Insert or replace the owner's query of that name.
INSERT INTO explore_query (owner, name, sql, shared, chart)
VALUES (%(owner)s, %(name)s, %(sql)s, %(shared)s, %(chart)s)
ON CONFLICT (owner, name) DO UPDATE
SET sql = EXCLUDED.sql, shared = EXCLUDED.shared, chart = EXCLUDED.chart, updated_at = now()
RETURNING id, owner, name, sql, shared, chart, created_at, updated_at;

-- name: shared_by_other
-- Who else shares a query of this name (names of shared queries are unique, case aside).
SELECT owner FROM explore_query
WHERE shared AND lower(name) = lower(%(name)s) AND owner <> %(owner)s;

-- name: visible_queries
-- The user's own queries, then those the others share, by name.
SELECT id, owner, name, sql, shared, chart, created_at, updated_at, owner = %(user)s AS mine
FROM explore_query
WHERE owner = %(user)s OR shared
ORDER BY owner <> %(user)s, lower(name), owner;

-- name: visible_query
SELECT id, owner, name, sql, shared, chart, created_at, updated_at, owner = %(user)s AS mine
FROM explore_query
WHERE id = %(id)s AND (owner = %(user)s OR shared);

-- name: delete_query
DELETE FROM explore_query WHERE id = %(id)s AND owner = %(owner)s RETURNING id, name;
