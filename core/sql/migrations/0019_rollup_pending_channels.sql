-- Rollup ranges waiting for a refresh, now at every storage level: an import records its
-- range (and channels) in its own transaction and the rollups are refreshed after it, once
-- for a batch of consecutive files (core.ingest.import_files, core.rollups.refresh_pending).
-- channel_ids: the channels whose rollups need it (NULL: every channel); level 2's
-- continuous aggregates refresh by time alone and ignore it.

ALTER TABLE rollup_pending ADD COLUMN channel_ids integer[];
