-- Storage levels 1 and 2 (TimescaleDB): readings in a hypertable of 30-day chunks.
-- There is no level-0 variant of this migration: at level 0 `reading` stays a table.

SELECT create_hypertable('reading', by_range('time', INTERVAL '30 days'));
