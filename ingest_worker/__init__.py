"""The ingest worker process: runs queued jobs (imports, rollups, exports)."""
