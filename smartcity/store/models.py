"""SQLAlchemy 2 models (typed declarative). Migrations in migrations/versions/ must match these:
tests/unit/test_store_migrations.py compares them with Alembic's autogenerate.

Conventions: every timestamp is a `UTCDateTime` (aware UTC in Python; timestamptz on PostgreSQL,
naive UTC text on SQLite); constraint names follow `NAMING` so that migrations can name them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in and out; a naive datetime is refused (it would be ambiguous)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime, got {type(value).__name__}: {value!r}")
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value.isoformat()} refused: give it a timezone")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSON(),
        list[int]: JSON(),
        list[str]: JSON(),
    }


class Camera(Base):
    __tablename__ = "cameras"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    url: Mapped[str] = mapped_column(Text)  # may hold credentials: never in a repr or a log
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    # zones, lines, lanes, areas, calibration, location {latitude, longitude, road, segment_id}
    geometry: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    def __repr__(self) -> str:
        return f"Camera(id={self.id!r}, name={self.name!r}, enabled={self.enabled!r})"


class Incident(Base):
    __tablename__ = "incidents"
    __table_args__ = (
        CheckConstraint(
            _in("state", ("open", "acknowledged", "resolved", "dismissed")), name="state"
        ),
        CheckConstraint(
            _in("severity", ("info", "low", "medium", "high", "critical")), name="severity"
        ),
        # De-duplication: one *active* incident per (camera, type, key).
        Index(
            "uq_incidents_active_key",
            "camera_id",
            "type",
            "key",
            unique=True,
            sqlite_where=text("closed_at IS NULL"),
            postgresql_where=text("closed_at IS NULL"),
        ),
        # Covering indexes for the API's filtered pages (migration 0004): the filter columns
        # ride along so SQLite tests them without reading the table row.
        Index(
            "ix_incidents_opened_at_cover",
            "opened_at",
            "id",
            "type",
            "state",
            "severity",
            "camera_id",
        ),  # fmt: skip
        Index(
            "ix_incidents_camera_id_opened_at_cover",
            "camera_id",
            "opened_at",
            "id",
            "type",
            "state",
            "severity",
        ),  # fmt: skip
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    type: Mapped[str] = mapped_column(String(64))
    camera_id: Mapped[str] = mapped_column(
        ForeignKey("cameras.id", ondelete="RESTRICT"), index=False
    )
    key: Mapped[str] = mapped_column(String(200))
    state: Mapped[str] = mapped_column(String(16))
    severity: Mapped[str] = mapped_column(String(16))
    priority: Mapped[int] = mapped_column(Integer, default=0)
    score: Mapped[float] = mapped_column(Float, default=1.0)
    opened_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    closed_at: Mapped[datetime | None]
    first_pts: Mapped[float | None] = mapped_column(Float)
    last_pts: Mapped[float | None] = mapped_column(Float)
    track_ids: Mapped[list[int]] = mapped_column(default=list)
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    legal_hold: Mapped[bool] = mapped_column(Boolean, default=False)
    assigned_to: Mapped[str | None] = mapped_column(String(128))
    count: Mapped[int] = mapped_column(Integer, default=1)

    def __repr__(self) -> str:
        return f"Incident(id={self.id!r}, type={self.type!r}, state={self.state!r})"


class IncidentEvent(Base):
    __tablename__ = "incident_events"
    __table_args__ = (Index("ix_incident_events_incident_id_id", "incident_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    incident_id: Mapped[str] = mapped_column(ForeignKey("incidents.id", ondelete="CASCADE"))
    at: Mapped[datetime]
    kind: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str | None] = mapped_column(String(128))
    text: Mapped[str | None] = mapped_column(Text)
    data: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class Evidence(Base):
    __tablename__ = "evidence"
    __table_args__ = (
        CheckConstraint(_in("kind", ("snapshot", "clip")), name="kind"),
        Index("ix_evidence_created_at", "created_at"),
        Index("ix_evidence_incident_id", "incident_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    incident_id: Mapped[str] = mapped_column(ForeignKey("incidents.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))
    path: Mapped[str] = mapped_column(String(512), unique=True)
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]


class TrafficBucket(Base):
    __tablename__ = "traffic_buckets"
    __table_args__ = (
        UniqueConstraint(
            "camera_id",
            "source_kind",
            "source_name",
            "period",
            "start",
            "cls",
            "direction",
            name="uq_traffic_buckets_key",
        ),
        CheckConstraint(_in("source_kind", ("line", "lane")), name="source_kind"),
        CheckConstraint(_in("period", ("1m", "15m", "1h", "1d")), name="period"),
        Index("ix_traffic_buckets_period_start", "period", "start"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    camera_id: Mapped[str] = mapped_column(ForeignKey("cameras.id", ondelete="CASCADE"))
    source_kind: Mapped[str] = mapped_column(String(8))
    source_name: Mapped[str] = mapped_column(String(128))
    period: Mapped[str] = mapped_column(String(4))
    start: Mapped[datetime]
    cls: Mapped[str] = mapped_column(String(32))
    direction: Mapped[str] = mapped_column(String(16))
    count: Mapped[int] = mapped_column(Integer)
    speed_mean: Mapped[float | None] = mapped_column(Float)
    speed_p85: Mapped[float | None] = mapped_column(Float)
    occupancy: Mapped[float | None] = mapped_column(Float)
    los: Mapped[str | None] = mapped_column(String(1))


class IngestCounter(Base):
    __tablename__ = "ingest_counters"

    camera_id: Mapped[str] = mapped_column(
        ForeignKey("cameras.id", ondelete="CASCADE"), primary_key=True
    )
    received: Mapped[int] = mapped_column(BigInteger, default=0)
    missed: Mapped[int] = mapped_column(BigInteger, default=0)  # bus gaps
    decode_errors: Mapped[int] = mapped_column(BigInteger, default=0)
    last_seq: Mapped[int | None] = mapped_column(BigInteger)  # last tracks seq handled
    updated_at: Mapped[datetime]


# ---- the API (users, sessions, keys, audit, webhooks, road safety) -------------------------


class User(Base):
    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint(_in("role", ("viewer", "operator", "maintenance", "admin")), name="role"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(128), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))  # Argon2id, never the password
    role: Mapped[str] = mapped_column(String(32))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime]
    # None: every camera; else the camera ids this user may see (others answer 404)
    cameras: Mapped[list[str] | None] = mapped_column(JSON)
    # sessions and tokens issued before this instant are refused
    password_changed_at: Mapped[datetime | None]
    failed_logins: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    locked_until: Mapped[datetime | None]

    def __repr__(self) -> str:
        return f"User(id={self.id!r}, username={self.username!r}, role={self.role!r})"


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(128))
    prefix: Mapped[str] = mapped_column(String(16))  # shown to identify a key; not a secret
    key_hash: Mapped[str] = mapped_column(String(255), unique=True)  # the key itself is never kept
    created_at: Mapped[datetime]
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    scopes: Mapped[list[str]] = mapped_column(JSON, default=list, server_default="[]")
    cameras: Mapped[list[str] | None] = mapped_column(JSON)
    expires_at: Mapped[datetime | None]
    rate_per_min: Mapped[int | None] = mapped_column(Integer)

    def __repr__(self) -> str:
        return f"ApiKey(id={self.id!r}, name={self.name!r}, prefix={self.prefix!r})"


class AuthSession(Base):
    """A login: a cookie session (with its CSRF token) or a bearer token. Only the hash is kept."""

    __tablename__ = "auth_sessions"
    __table_args__ = (CheckConstraint(_in("kind", ("cookie", "bearer")), name="kind"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(8))
    csrf: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    ip: Mapped[str | None] = mapped_column(String(64))


class AuditLog(Base):
    """Hash-chained: `hash` = sha256(prev_hash + canonical record); see smartcity/api/audit.py."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_at", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str | None] = mapped_column(String(256))
    at: Mapped[datetime]
    data: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    ip: Mapped[str | None] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(16), default="ok", server_default="ok")
    prev_hash: Mapped[str | None] = mapped_column(String(64))
    hash: Mapped[str | None] = mapped_column(String(64))


class Webhook(Base):
    __tablename__ = "webhooks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128))
    url: Mapped[str] = mapped_column(Text)
    secret: Mapped[str] = mapped_column(String(128))  # signs deliveries; never returned
    events: Mapped[list[str]] = mapped_column(JSON)  # event types, "*" or "incident.*" patterns
    cameras: Mapped[list[str] | None] = mapped_column(JSON)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_by: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime]


class WebhookDelivery(Base):
    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        CheckConstraint(_in("status", ("pending", "delivered", "failed")), name="status"),
        Index("ix_webhook_deliveries_status_next_attempt_at", "status", "next_attempt_at"),
        Index("ix_webhook_deliveries_webhook_id_id", "webhook_id", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    webhook_id: Mapped[int] = mapped_column(ForeignKey("webhooks.id", ondelete="CASCADE"))
    event_id: Mapped[str] = mapped_column(String(64))
    event_type: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None]
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    delivered_at: Mapped[datetime | None]


class CrashRecord(Base):
    """A historical crash imported from the police's records (road-safety hotspot analysis)."""

    __tablename__ = "crash_records"
    __table_args__ = (
        CheckConstraint(
            _in("severity", ("fatal", "serious", "minor", "damage_only")), name="severity"
        ),
        Index("ix_crash_records_occurred_at", "occurred_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    occurred_at: Mapped[datetime]
    latitude: Mapped[float] = mapped_column(Float)
    longitude: Mapped[float] = mapped_column(Float)
    severity: Mapped[str] = mapped_column(String(16))
    vehicles: Mapped[int | None] = mapped_column(Integer)
    casualties: Mapped[int | None] = mapped_column(Integer)
    road: Mapped[str | None] = mapped_column(String(200))
    segment_id: Mapped[str | None] = mapped_column(String(128))
    source: Mapped[str] = mapped_column(String(128))  # the import's name (file)
    source_ref: Mapped[str | None] = mapped_column(String(128))  # the record's own id, if any
    # sha256 of the normalised values: importing the same record twice keeps one row
    row_hash: Mapped[str] = mapped_column(String(64), unique=True)
    imported_at: Mapped[datetime]
