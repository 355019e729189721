-- Time ranges whose rollups still need a refresh. At storage level 2 the rollups are
-- continuous aggregates, which cannot be refreshed inside the import's transaction: the
-- import writes its range here in that transaction, refreshes after the commit and then
-- deletes the row; a range left behind (a process killed between the two) is refreshed by
-- the worker's periodic catch-up (core.rollups.refresh_pending). Unused at levels 0 and 1,
-- where the rollups are refreshed in the import's own transaction.

CREATE TABLE rollup_pending (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    start     timestamptz NOT NULL,
    "end"     timestamptz NOT NULL CHECK ("end" > start),
    queued_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
