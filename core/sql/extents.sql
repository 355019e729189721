-- Each channel's first and last reading time (core.extents, table channel_extent).

-- name: widen
-- A file's readings, per channel: its first and last time; the rows locked in channel order
-- (two imports of one station wait for each other, never deadlock). A row only widens.
INSERT INTO channel_extent (channel_id, first_time, last_time)
SELECT x.channel_id, x.first_time, x.last_time
FROM unnest(%(channel_ids)s::integer[], %(firsts)s::timestamptz[], %(lasts)s::timestamptz[])
     AS x (channel_id, first_time, last_time)
ORDER BY x.channel_id
ON CONFLICT (channel_id) DO UPDATE
    SET first_time = least(channel_extent.first_time, EXCLUDED.first_time),
        last_time = greatest(channel_extent.last_time, EXCLUDED.last_time)
    WHERE EXCLUDED.first_time < channel_extent.first_time OR EXCLUDED.last_time > channel_extent.last_time;

-- name: lock_touching
-- The channels whose first or last reading lies in [%(first)s, %(last)s] (readings deleted
-- there may have been it), their rows locked in channel order.
SELECT channel_id FROM channel_extent
WHERE first_time BETWEEN %(first)s AND %(last)s OR last_time BETWEEN %(first)s AND %(last)s
ORDER BY channel_id
FOR UPDATE;

-- name: recompute
-- The extents of the channels %(channel_ids)s (NULL: every channel) from `reading` again, with
-- two index probes per channel; a channel left without readings loses its row.
WITH probe AS (
    SELECT c.id AS channel_id,
           (SELECT r.time FROM reading r WHERE r.channel_id = c.id ORDER BY r.time LIMIT 1) AS first_time,
           (SELECT r.time FROM reading r WHERE r.channel_id = c.id ORDER BY r.time DESC LIMIT 1) AS last_time
    FROM channel c
    WHERE %(channel_ids)s::integer[] IS NULL OR c.id = ANY(%(channel_ids)s::integer[])
), gone AS (
    DELETE FROM channel_extent e
    WHERE (%(channel_ids)s::integer[] IS NULL OR e.channel_id = ANY(%(channel_ids)s::integer[]))
      AND NOT EXISTS (SELECT 1 FROM probe p WHERE p.channel_id = e.channel_id AND p.first_time IS NOT NULL)
)
INSERT INTO channel_extent (channel_id, first_time, last_time)
SELECT channel_id, first_time, last_time FROM probe WHERE first_time IS NOT NULL
ORDER BY channel_id
ON CONFLICT (channel_id) DO UPDATE
    SET first_time = EXCLUDED.first_time, last_time = EXCLUDED.last_time
    WHERE (channel_extent.first_time, channel_extent.last_time)
          IS DISTINCT FROM (EXCLUDED.first_time, EXCLUDED.last_time);

-- name: mismatches
-- Channels whose row says other than `reading` (index probes): none when the table is right.
SELECT c.id AS channel_id, e.first_time, e.last_time, f.time AS true_first, l.time AS true_last
FROM channel c
LEFT JOIN channel_extent e ON e.channel_id = c.id
LEFT JOIN LATERAL (SELECT r.time FROM reading r WHERE r.channel_id = c.id ORDER BY r.time LIMIT 1) f ON true
LEFT JOIN LATERAL (SELECT r.time FROM reading r WHERE r.channel_id = c.id ORDER BY r.time DESC LIMIT 1) l ON true
WHERE (e.first_time, e.last_time) IS DISTINCT FROM (f.time, l.time)
ORDER BY c.id;
