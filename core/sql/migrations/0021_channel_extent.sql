-- Each channel's first and last reading time, kept by the import in the same transaction as
-- its readings (core.extents): the Overview, the Station page and sync health read it
-- instead of probing `reading` twice per channel. A row per channel with readings, at every
-- storage level a plain table. No foreign key, as on `reading`: checking it would lock the
-- channel's row for each new extent, against an import holding that row (a deadlock between
-- two imports of one station); the queries join from `channel`, so a deleted channel's row
-- is never read (and is gone at the next rebuild, core.extents.recompute).
--
-- Built from the readings already there with two index probes per channel (the primary key
-- (channel_id, time), in every chunk at levels 1-2), not a scan of `reading`. Readings
-- written while it is built wait (SHARE lock: reads go on), so none is missed.

CREATE TABLE channel_extent (
    channel_id integer PRIMARY KEY,
    first_time timestamptz NOT NULL,
    last_time  timestamptz NOT NULL,
    CHECK (first_time <= last_time)
);

LOCK TABLE reading IN SHARE MODE;

INSERT INTO channel_extent (channel_id, first_time, last_time)
SELECT c.id, f.time, l.time
FROM channel c
CROSS JOIN LATERAL (SELECT r.time FROM reading r WHERE r.channel_id = c.id ORDER BY r.time LIMIT 1) f
CROSS JOIN LATERAL (SELECT r.time FROM reading r WHERE r.channel_id = c.id ORDER BY r.time DESC LIMIT 1) l
ORDER BY c.id;
