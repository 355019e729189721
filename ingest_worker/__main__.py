"""``python -m ingest_worker`` — the same as ``stationmanager worker``."""

from ingest_worker.worker import main

raise SystemExit(main())
