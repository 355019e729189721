"""The routes under ``/api/v1``: each checks the caller and calls core, as the pages do."""

from __future__ import annotations

import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, StreamingResponse
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from api import access
from api.access import Analyst, Viewer
from api.models import (
    Channel,
    Export,
    ExportIn,
    FileStatus,
    Flag,
    FlagIn,
    Health,
    Station,
    Sync,
    checked_time,
)
from core import db, exports, files, flags, home, stations, sync_health, tidy
from core.errors import InvalidValue, NotFound
from core.export_writers import slug as export_slug
from core.exports import software_version
from core.settings import get_settings

router = APIRouter()

#: Text without NUL (PostgreSQL text cannot hold it); names up to 200 characters.
TEXT = r"^[^\x00]*$"
Name = Annotated[str, PathParam(description="The station's name", pattern=TEXT, min_length=1, max_length=200)]
ItemId = Annotated[int, PathParam(ge=1, le=2**31 - 1)]
MIME = {"windographer": "text/plain", "csv": "text/csv", "zip": "application/zip",
        "parquet": "application/vnd.apache.parquet"}


@router.get("/status", tags=["service"], summary="Whether the API process runs (no token needed)")
def status() -> dict[str, Any]:
    return {"ok": True, "version": software_version()}


@router.get("/health", tags=["service"],
            summary="Whether the API runs and its database answers (no token needed; 503 if not)")
def health() -> dict[str, Any]:
    with db.connection() as conn:
        conn.execute("SELECT 1")
    return {"ok": True, "version": software_version()}


# --- files ---------------------------------------------------------------------------------


def _file_out(r: dict[str, Any]) -> FileStatus:
    return FileStatus(
        id=r["id"], name=r["original_name"], station=r.get("station"), status=r["status"],
        duplicate=r["status"] == "duplicate", duplicate_of=r["duplicate_of"], format=r["format"],
        size_bytes=r["size_bytes"], rows=r["n_rows"], readings=r["n_readings"], changed=r["n_changed"],
        first_time=r["first_time"], last_time=r["last_time"], error=r["error"], error_line=r["error_line"],
        warnings=r.get("warnings") or [], parent_id=r.get("parent_id"), received_at=r["received_at"],
        received_by=r["received_by"], origin=r["origin"],
    )


_UPLOAD_BODY = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {
        "type": "object", "required": ["file"],
        "properties": {"file": {"type": "string", "format": "binary"},
                       "station": {"type": "string", "pattern": TEXT, "maxLength": 200}}}},
    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
}}}


@router.post(
    "/files", status_code=202, tags=["files"], response_model=FileStatus, openapi_extra=_UPLOAD_BODY,
    summary="Send a logger file (or an archive of them); the worker imports it",
    description="A multipart form with `file` (and optionally `station`), or the raw bytes with `?name=`. "
                "Answers 202 with the file's id and status: `queued`, or `duplicate` when the same content "
                "was received before (nothing is imported again). Follow it with GET /files/{id}. Without a "
                "station the file is routed by the logger serial or station name in its header.",
)
async def post_file(
    request: Request, who: Analyst,
    name: Annotated[str | None, Query(description="The file's name (raw body)", pattern=TEXT,
                                      min_length=1, max_length=255)] = None,
    station: Annotated[str | None, Query(description="The station (created if new)", pattern=TEXT,
                                         min_length=1, max_length=200)] = None,
) -> FileStatus:
    settings = get_settings()
    folder = Path(tempfile.mkdtemp(prefix="sm-api-", dir=home.process_tmp(settings)))
    try:
        path = folder / "upload"
        if request.headers.get("content-type", "").startswith("multipart/form-data"):
            async with request.form(max_files=1, max_fields=5) as form:
                part, field = form.get("file"), form.get("station")
                if not isinstance(part, UploadFile):
                    raise HTTPException(422, "the form has no file: send it as the field 'file'")
                if field is not None and (not isinstance(field, str) or "\x00" in field or len(field) > 200):
                    raise HTTPException(422, "the form field 'station' must be a station name")
                station = station or field or None
                name = name or part.filename
                with path.open("wb") as out:
                    await run_in_threadpool(shutil.copyfileobj, part.file, out)
        else:
            with path.open("wb") as out:
                async for chunk in request.stream():
                    await run_in_threadpool(out.write, chunk)
        if not name or not Path(name).name or "\x00" in name:
            raise HTTPException(422, "give the file's name: POST /api/v1/files?name=FILE.dat (or a multipart "
                                     "form whose file part has a filename)")
        ids = await run_in_threadpool(files.receive_paths, [(name, path)], station=station, actor=who.actor,
                                      origin="api", settings=settings)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return await run_in_threadpool(_file, ids[0])


def _file(file_id: int) -> FileStatus:
    with db.connection() as conn:
        return _file_out(files.get_file(conn, file_id))


@router.get("/files/{item_id}", tags=["files"], response_model=FileStatus,
            summary="A received file: status, counts, and the error with its line")
def get_file(item_id: ItemId, who: Viewer) -> FileStatus:
    return _file(item_id)


@router.get("/files/{item_id}/original", tags=["files"], response_class=FileResponse,
            responses={200: {"content": {"application/octet-stream": {}}, "description": "The original bytes"}},
            summary="The original of a received file, as it was received")
def get_original(item_id: ItemId, who: Annotated[str, Depends(access.downloader("file"))]) -> FileResponse:
    with db.connection() as conn:
        row = files.get_file(conn, item_id)
    path = files.original_path(row)
    if not path.is_file():
        raise NotFound(f"the original of file {item_id} is missing from the file store")
    return FileResponse(path, filename=Path(row["original_name"]).name, media_type="application/octet-stream")


# --- stations --------------------------------------------------------------------------------


@router.get("/stations", tags=["stations"], response_model=list[Station], summary="Every station")
def get_stations(who: Viewer) -> list[Station]:
    with db.connection() as conn:
        rows = db.fetch_all(conn, "stations")
    return [Station(**{k: r.get(k) for k in Station.model_fields}) for r in rows]


@router.get("/stations/{name}/channels", tags=["stations"], response_model=list[Channel],
            summary="A station's channels with their measurement points")
def get_channels(name: Name, who: Viewer) -> list[Channel]:
    with db.connection() as conn:
        rows = stations.channels(conn, stations.station(conn, name)["id"])
    return [Channel(id=r["id"], column_name=r["column_name"], label=r["label"], statistic=r["statistic"],
                    unit=r["unit"], mapped=r["mapped"], measurement_point=r["point_name"],
                    measurement_type=r["measurement_type"], height_m=r["height_m"],
                    orientation_deg=r["orientation_deg"]) for r in rows]


@router.get("/stations/{name}/health", tags=["stations"], response_model=Health,
            summary="What the Overview shows of a station: status, faults, recovery, files, sync")
def get_health(name: Name, who: Viewer) -> Health:
    now = datetime.now(UTC)
    with db.connection() as conn:
        st = stations.station(conn, name)
        row = next((r for r in stations.overview(conn, now) if r["id"] == st["id"]), None)
        sync = sync_health.station(conn, st["id"], now)
    if row is None:
        raise NotFound(f"no station called {name!r}")
    fields = {k: row.get(k) for k in Health.model_fields if k not in ("station", "sync")}
    return Health(station=row["name"], **fields,
                  sync=Sync(state=sync.state, reason=sync.reason, sources=sync.sources) if sync else None)


# --- flags -------------------------------------------------------------------------------------


def _flag_out(r: dict[str, Any]) -> Flag:
    return Flag(id=r["id"], station=r["station"], start=r["start_time"], end=r["end_time"], category=r["category"],
                whole_station=r["whole_station"], channel_ids=r["channel_ids"] or [], channels=r["columns"] or [],
                note=r["note"], source=r["source"], rule=r["rule"], author=r["author"],
                created_at=r["created_at"], deleted=r["deleted_at"] is not None)


When = Annotated[datetime | None, Query(description="UTC unless an offset is given")]


@router.get("/stations/{name}/flags", tags=["flags"], response_model=list[Flag],
            summary="A station's flags overlapping [start, end)")
def get_flags(name: Name, who: Viewer, start: When = None, end: When = None,
              deleted: Annotated[bool, Query(description="Also deleted flags")] = False) -> list[Flag]:
    with db.connection() as conn:
        rows = flags.list_flags(conn, name, checked_time(start, "start"), checked_time(end, "end"),
                                include_deleted=deleted)
    return [_flag_out(r) for r in rows]


@router.post("/stations/{name}/flags", status_code=201, tags=["flags"], response_model=Flag,
             summary="Flag channels (or the whole station) over [start, end)")
def post_flag(name: Name, body: FlagIn, who: Analyst) -> Flag:
    with db.connection() as conn:
        channels: Any = "station" if body.channels is None else flags.channel_ids_by_name(conn, name, body.channels)
        flag_id = flags.add_flag(conn, name, channels, body.start, body.end, body.category, body.note, who.actor)
        return _flag_out(flags.get_flag(conn, flag_id))


# --- exports -----------------------------------------------------------------------------------


def _export_out(r: dict[str, Any]) -> Export:
    return Export(id=r["id"], station=r["station"], format=r["format"], status=r["status"],
                  progress=r["progress"], message=r["message"], reused=bool(r.get("reused")),
                  file_name=r["file_name"], size_bytes=r["size_bytes"], rows=r["n_rows"],
                  requested_by=r["requested_by"], requested_at=r["requested_at"], finished_at=r["finished_at"],
                  error=r["error"], params=r["params"],
                  file_url=f"/api/v1/exports/{r['id']}/file" if r["status"] == "done" else None)


@router.post("/exports", status_code=202, tags=["exports"], response_model=Export,
             summary="Request an export (the Exports page's options); the worker builds it",
             description="An unchanged earlier export is reused at once (`status` done, `reused` true); "
                         "otherwise follow GET /exports/{id} until `status` is done, then GET its file_url.")
def post_export(body: ExportIn, who: Analyst) -> Export:
    req = exports.ExportRequest(
        station=body.station, format=body.format, start=body.start, end=body.end,
        channel_ids=None if body.channel_ids is None else tuple(body.channel_ids),
        measurement_types=None if body.measurement_types is None else tuple(body.measurement_types),
        calibrated=body.calibrated,
        exclude_categories=None if body.exclude_categories is None else tuple(body.exclude_categories),
        averaging=body.averaging, timezone=body.timezone, parquet_layout=body.parquet_layout, headers=body.headers)
    with db.connection() as conn:
        return _export_out(exports.request_export(conn, req, who.actor))


@router.get("/exports/{item_id}", tags=["exports"], response_model=Export,
            summary="An export: status, progress, size, error")
def get_export(item_id: ItemId, who: Viewer) -> Export:
    with db.connection() as conn:
        return _export_out(exports.get_export(conn, item_id))


@router.get("/exports/{item_id}/file", tags=["exports"], response_class=FileResponse,
            responses={200: {"content": {m: {} for m in sorted(set(MIME.values()))},
                             "description": "The export's file, whatever its size (Range requests work)"}},
            summary="Download a finished export (a token, or a page's signed link)")
def get_export_file(item_id: ItemId, who: Annotated[str, Depends(access.downloader("export"))]) -> FileResponse:
    with db.connection() as conn:
        row = exports.get_export(conn, item_id)
    path = exports.export_file(row)
    return FileResponse(path, filename=row["file_name"] or path.name,
                        media_type=MIME.get(row["format"], "application/octet-stream"))


# --- readings ----------------------------------------------------------------------------------

Param = Annotated[str | None, Query(pattern=TEXT, max_length=2000)]


@router.get(
    "/readings", tags=["readings"], response_class=StreamingResponse,
    responses={200: {"content": {m: {} for m in tidy.MEDIA_TYPES.values()},
                     "description": "The tidy table, streamed: " + ", ".join(tidy.COLUMNS)}},
    summary="Readings as a tidy long table (Parquet, CSV or JSON Lines), streamed whatever the period",
    description="One row per value with its channel's metadata: " + ", ".join(tidy.COLUMNS) + ". Cleaned as an "
                "export is: recalibrated unless `calibrated=false`; flagged values removed (`exclude=all`, the "
                "default), kept and marked in `flag` (`exclude=none`), or removed for some categories only "
                "(`exclude=icing,suspect`); averaged over `averaging` (UTC steps).",
)
def get_readings(
    request: Request, who: Viewer,
    station: Annotated[str, Query(description="The station's name", pattern=TEXT, min_length=1, max_length=200)],
    channels: Annotated[str | None, Query(description="Channel ids, comma-separated (GET /stations/{name}/channels)",
                                          pattern=r"^[0-9, ]*$", max_length=20_000)] = None,
    types: Annotated[str | None, Query(description="Measurement types, comma-separated, e.g. wind_speed",
                                       pattern=TEXT, max_length=2000)] = None,
    start: Annotated[str | None, Query(description="ISO 8601; a date is its UTC midnight; no offset: UTC",
                                       pattern=TEXT, max_length=40)] = None,
    end: Annotated[str | None, Query(description="ISO 8601, exclusive", pattern=TEXT, max_length=40)] = None,
    calibrated: Annotated[str | None, Query(description="true (default) or false: values as logged",
                                            pattern=TEXT, max_length=10)] = None,
    exclude: Annotated[str | None, Query(description="all (default), none, or flag categories, comma-separated",
                                         pattern=TEXT, max_length=500)] = None,
    averaging: Annotated[str | None, Query(description="10min (default), 1h or 1d", pattern=TEXT,
                                           max_length=10)] = None,
    format: Annotated[str, Query(description="parquet (default), csv or json (JSON Lines)",
                                 pattern=TEXT, max_length=10)] = "parquet",
) -> StreamingResponse:
    params: dict[str, list[str]] = {}
    for key, value in request.query_params.multi_items():
        params.setdefault(key, []).append(value)
    try:
        query = tidy.ReadingsQuery.from_params(params)
        chunks = tidy.stream_readings(db.database_url(), query, format)
    except OverflowError as exc:
        raise InvalidValue("start or end: a time too far from today") from exc
    name = f"{export_slug(query.station)}_readings{tidy.EXTENSIONS[format]}"
    return StreamingResponse(chunks, media_type=tidy.MEDIA_TYPES[format],
                             headers={"Content-Disposition": f'attachment; filename="{name}"'})
