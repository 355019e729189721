"""Serve the API with uvicorn: ``stationmanager api [--host H] [--port P]``."""

from __future__ import annotations

import argparse
import logging

import uvicorn

from core import db, schema
from core.logs import setup_logging
from core.settings import get_settings

log = logging.getLogger(__name__)


def serve(host: str = "127.0.0.1", port: int | None = None) -> int:
    """Run the API until SIGTERM or Ctrl-C (uvicorn finishes the requests under way)."""
    from api.app import create_app

    settings = get_settings()
    url = db.database_url(settings)
    schema.upgrade(url, settings)
    # requests wait at most CONNECT_TIMEOUT_S for a connection, then answer 503
    db.pool(url, kind="api", wait_s=settings.connect_timeout_s)  # sized by API_POOL_SIZE
    port = settings.api_port if port is None else port
    log.info("API on http://%s:%s/api/v1 (OpenAPI: /api/v1/openapi.json)", host, port)
    try:
        uvicorn.run(create_app(settings), host=host, port=port, log_level=settings.log_level.lower(),
                    access_log=False, server_header=False, timeout_graceful_shutdown=10)
    finally:
        db.close_pools()
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m api", description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int)
    args = p.parse_args(argv)
    setup_logging(get_settings().log_level)
    return serve(args.host, args.port)
