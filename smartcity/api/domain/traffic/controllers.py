"""Traffic figures per camera, line or lane, class, direction and time bucket; JSON or CSV."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from typing import Annotated

import msgspec
from litestar import Controller, Response, get
from litestar.exceptions import ValidationException
from litestar.params import FromPath, FromQuery, QueryParameter

from smartcity.api.domain.common import AnyRequest, parse_time, store, visible_camera
from smartcity.store import PERIODS, BucketRecord

MAX_ROWS = 100_000
COLUMNS = ("camera_id", "source_kind", "source_name", "period", "start", "cls", "direction",
           "count", "speed_mean", "speed_p85", "occupancy", "los")  # fmt: skip


class Bucket(msgspec.Struct):
    camera_id: str
    source_kind: str
    source_name: str
    period: str
    start: str
    cls: str
    direction: str
    count: int
    speed_mean: float | None
    speed_p85: float | None
    occupancy: float | None
    los: str | None


class TrafficAnswer(msgspec.Struct):
    camera: str
    period: str
    since: str
    until: str
    buckets: list[Bucket]
    truncated: bool


def _out(b: BucketRecord) -> Bucket:
    return Bucket(
        camera_id=b.camera_id, source_kind=b.source_kind, source_name=b.source_name,
        period=b.period, start=b.start.isoformat(), cls=b.cls, direction=b.direction,
        count=b.count, speed_mean=b.speed_mean, speed_p85=b.speed_p85,
        occupancy=b.occupancy, los=b.los,
    )  # fmt: skip


class TrafficController(Controller):
    path = "/api/v1/traffic"
    tags = ["traffic"]

    @get(
        "/{camera_id:str}",
        opt={"perm": "traffic.read"},
        sync_to_thread=True,
        summary="Counts, speeds, occupancy and level of service of one camera",
        description="format=csv gives text/csv with the same columns. Default: the last 24 h.",
    )
    def traffic(
        self,
        request: AnyRequest,
        camera_id: FromPath[str],
        period: Annotated[str, QueryParameter(pattern="^(1m|15m|1h|1d)$")] = "15m",
        since: FromQuery[str | None] = None,
        until: FromQuery[str | None] = None,
        source_kind: Annotated[str | None, QueryParameter(pattern="^(line|lane)$")] = None,
        source_name: Annotated[str | None, QueryParameter(max_length=128)] = None,
        object_class: Annotated[
            str | None, QueryParameter(name="cls", max_length=32, description="car, bus, all ...")
        ] = None,
        direction: Annotated[str | None, QueryParameter(max_length=16)] = None,
        format: Annotated[str, QueryParameter(pattern="^(json|csv)$")] = "json",
    ) -> Response[TrafficAnswer] | Response[str]:
        visible_camera(request, camera_id)
        st = store(request)
        st.cameras.get(camera_id)  # 404 for an unknown camera
        t1 = parse_time(until, "until") or datetime.now(UTC)
        t0 = parse_time(since, "since") or t1 - timedelta(days=1)
        if t0 >= t1:
            raise ValidationException("since must be before until")
        if (t1 - t0).total_seconds() / PERIODS[period] > MAX_ROWS:
            raise ValidationException(f"too many {period} buckets; use a longer period")
        rows = st.traffic.query(
            camera_id, period, since=t0, until=t1, source_kind=source_kind, source_name=source_name
        )
        rows = [
            r
            for r in rows
            if (object_class is None or r.cls == object_class)
            and (direction is None or r.direction == direction)
        ]
        truncated = len(rows) > MAX_ROWS
        rows = rows[:MAX_ROWS]
        if format == "csv":
            buf = io.StringIO()
            w = csv.writer(buf, lineterminator="\n")
            w.writerow(COLUMNS)
            for r in rows:
                b = _out(r)
                w.writerow(["" if getattr(b, c) is None else getattr(b, c) for c in COLUMNS])
            return Response(
                buf.getvalue(),
                media_type="text/csv",
                headers={
                    "Content-Disposition": (
                        f'attachment; filename="traffic-{camera_id}-{period}.csv"'
                    )
                },
            )
        return Response(
            TrafficAnswer(
                camera=camera_id,
                period=period,
                since=t0.isoformat(),
                until=t1.isoformat(),
                buckets=[_out(r) for r in rows],
                truncated=truncated,
            )
        )
