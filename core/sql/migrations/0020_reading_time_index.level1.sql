-- Storage levels 1 and 2: `reading` keeps its (channel_id, time) primary key as its only index.
-- create_hypertable() in migration 0002 also built an index on (time DESC) in every chunk.
-- No query uses it (every read of `reading` names its channels, and the primary key serves
-- time ranges per channel), but each reading inserted went into it too, in the middle of
-- the index: it doubled the server's work per reading of a COPY, and the chunks' time
-- indexes of a big file outgrew shared_buffers (see docs/benchmarks.md). Level 0 never had it.
-- `db raise-level` (core.sql rollups.sql, make_hypertable) no longer creates it either.
DROP INDEX IF EXISTS reading_time_idx;
