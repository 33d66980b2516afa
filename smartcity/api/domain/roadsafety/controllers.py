"""Road safety: historical crash records in (CSV), hotspots out (GeoJSON); docs/roadsafety.md.

The CSV is the request body (`Content-Type: text/csv`, e.g. `curl --data-binary @file.csv`),
with `source` naming the import and optional `mapping` (JSON object: our field -> their column),
`severities` (JSON object: their word -> fatal|serious|minor|damage_only) and `timezone`."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, delete, get, post
from litestar.exceptions import NotFoundException, ValidationException
from litestar.params import FromPath, QueryParameter

from smartcity.api.domain.common import AnyRequest, audit, parse_time, principal, store
from smartcity.roadsafety import importer
from smartcity.roadsafety.hotspots import hotspots as find_hotspots
from smartcity.store.crashes import StoredCrash


class ImportResult(msgspec.Struct):
    source: str
    rows_read: int
    inserted: int
    duplicates: int
    error_count: int
    refused: bool
    errors: list[dict[str, Any]]  # {"line": n, "message": "..."}, the first 1000


class Crash(msgspec.Struct):
    id: int
    occurred_at: str
    latitude: float
    longitude: float
    severity: str
    vehicles: int | None
    casualties: int | None
    road: str | None
    segment_id: str | None
    source: str
    source_ref: str | None


class Source(msgspec.Struct):
    source: str
    records: int


def _crash(c: StoredCrash) -> Crash:
    return Crash(
        id=c.id, occurred_at=c.occurred_at.isoformat(), latitude=c.latitude,
        longitude=c.longitude, severity=c.severity, vehicles=c.vehicles,
        casualties=c.casualties, road=c.road, segment_id=c.segment_id, source=c.source,
        source_ref=c.source_ref,
    )  # fmt: skip


def _json_map(value: str | None, name: str) -> dict[str, str] | None:
    if value is None or value == "":
        return None
    try:
        m = json.loads(value)
    except ValueError as e:
        raise ValidationException(f"{name}: not JSON: {e}") from None
    if not isinstance(m, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in m.items()
    ):
        raise ValidationException(f'{name}: expected a JSON object of text, e.g. {{"a": "b"}}')
    return m


def _bbox(value: str | None) -> tuple[float, float, float, float] | None:
    if not value:
        return None
    try:
        a, b, c, d = (float(v) for v in value.split(","))
    except ValueError:
        raise ValidationException("bbox: expected min_lon,min_lat,max_lon,max_lat") from None
    if not (-180 <= a <= 180 and -180 <= c <= 180 and -90 <= b <= d <= 90):
        raise ValidationException("bbox: longitudes in [-180, 180], latitudes in [-90, 90]")
    return a, b, c, d


class RoadSafetyController(Controller):
    path = "/api/v1/roadsafety"
    tags = ["road safety"]

    @get(
        "/columns",
        opt={"perm": "roadsafety.read"},
        sync_to_thread=False,
        summary="The CSV columns, severity spellings and limits the importer understands",
    )
    def columns(self) -> dict[str, Any]:
        return importer.describe_columns()

    @post(
        "/crashes/import",
        opt={"perm": "roadsafety.write"},
        status_code=200,
        summary="Import crash records from a CSV body; bad rows reported by line",
        description="Send the file as the body (text/csv). Good rows are stored even when "
        "others are bad; a file whose header lacks a required column is refused whole.",
    )
    async def import_crashes(
        self,
        request: Request[Any, Any, Any],
        source: Annotated[str, QueryParameter(min_length=1, max_length=128)],
        mapping: Annotated[str | None, QueryParameter(max_length=4000)] = None,
        severities: Annotated[str | None, QueryParameter(max_length=4000)] = None,
        timezone: Annotated[str, QueryParameter(max_length=64)] = importer.DEFAULT_TZ,
    ) -> ImportResult:
        import anyio.to_thread

        body = await request.body()
        cols = _json_map(mapping, "mapping")
        sev = _json_map(severities, "severities")

        def run() -> importer.ImportReport:
            try:
                return importer.import_csv(body, source=source, store=store(request),
                                           mapping=cols, severities=sev,
                                           default_tz=timezone)  # fmt: skip
            except ValueError as e:
                raise ValidationException(str(e)) from None

        rep = await anyio.to_thread.run_sync(run)
        await anyio.to_thread.run_sync(
            lambda: audit(
                request,
                "crashes.import",
                target=f"crashes:{source}",
                outcome="ok" if not rep.refused else "failed",
                data={
                    "rows": rep.rows_read,
                    "inserted": rep.inserted,
                    "duplicates": rep.duplicates,
                    "errors": rep.error_count,
                },
            )  # fmt: skip
        )
        return ImportResult(
            source=rep.source, rows_read=rep.rows_read, inserted=rep.inserted,
            duplicates=rep.duplicates, error_count=rep.error_count, refused=rep.refused,
            errors=[{"line": ln, "message": msg} for ln, msg in rep.errors],
        )  # fmt: skip

    @get("/crashes", opt={"perm": "roadsafety.read"}, sync_to_thread=True)
    def list_crashes(
        self,
        request: AnyRequest,
        since: Annotated[str | None, QueryParameter()] = None,
        until: Annotated[str | None, QueryParameter()] = None,
        bbox: Annotated[
            str | None, QueryParameter(description="min_lon,min_lat,max_lon,max_lat")
        ] = None,
        source: Annotated[str | None, QueryParameter(max_length=128)] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 100,
        offset: Annotated[int, QueryParameter(ge=0, le=10_000_000)] = 0,
    ) -> list[Crash]:
        rows = store(request).crashes.list(
            since=parse_time(since, "since"), until=parse_time(until, "until"),
            bbox=_bbox(bbox), source=source, limit=limit, offset=offset,
        )  # fmt: skip
        return [_crash(c) for c in rows]

    @get("/crashes/sources", opt={"perm": "roadsafety.read"}, sync_to_thread=True)
    def sources(self, request: AnyRequest) -> list[Source]:
        return [Source(source=s, records=n) for s, n in store(request).crashes.sources()]

    @delete("/crashes/sources/{source:str}", opt={"perm": "roadsafety.write"},
            sync_to_thread=True, status_code=204)  # fmt: skip
    def delete_source(self, request: AnyRequest, source: FromPath[str]) -> None:
        n = store(request).crashes.delete_source(source)
        if n == 0:
            raise NotFoundException(f"no crash records from {source!r}")
        audit(request, "crashes.delete", target=f"crashes:{source}", data={"deleted": n})

    @get(
        "/hotspots",
        opt={"perm": "roadsafety.read"},
        sync_to_thread=True,
        media_type="application/geo+json",
        summary="Accident-prone cells or road segments ranked by risk score, as GeoJSON",
    )
    def hotspots(
        self,
        request: AnyRequest,
        since: Annotated[str | None, QueryParameter(description="default: a year ago")] = None,
        until: Annotated[str | None, QueryParameter(description="default: now")] = None,
        cell: Annotated[str, QueryParameter(pattern="^(grid|segment)$")] = "grid",
        cell_m: Annotated[float, QueryParameter(ge=50, le=5000)] = 250.0,
        limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 100,
    ) -> dict[str, Any]:
        t1 = parse_time(until, "until") or datetime.now(UTC)
        t0 = parse_time(since, "since") or t1 - timedelta(days=365)
        if t0 >= t1:
            raise ValidationException("since must be before until")
        p = principal(request)
        try:
            return find_hotspots(store(request), since=t0, until=t1, cell=cell, cell_m=cell_m,
                               cameras=p.camera_filter(), limit=limit)  # fmt: skip
        except ValueError as e:
            raise ValidationException(str(e)) from None
