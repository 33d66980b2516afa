"""The appliance's database: SQLAlchemy 2 models, repositories, Alembic migrations, retention.

    store = Store.open(data_dir=...)            # sqlite:///<data_dir>/smartcity.db, migrated
    cam = store.cameras.add("cam1", "North gate", "rtsp://...")
    inc = store.incidents.create(type="wrong_way", camera_id="cam1", key="track:17", at=...)

docs/storage.md describes URLs, tables, migrations, retention and crash safety.
"""

from smartcity.store.errors import (
    ConflictError,
    DuplicateError,
    EvidenceExistsError,
    InvalidInputError,
    InvalidTransitionError,
    NotFoundError,
    StoreError,
    UnknownCameraError,
    UnknownIncidentError,
)
from smartcity.store.records import (
    ACTIVE_STATES,
    CLOSED_STATES,
    EVENT_KINDS,
    EVIDENCE_KINDS,
    PERIODS,
    STATES,
    TRANSITIONS,
    BucketRecord,
    CameraRecord,
    EventRecord,
    EvidenceRecord,
    IncidentRecord,
    IngestCounters,
    Page,
)
from smartcity.store.repositories import combine, floor_period, utc_from_ns, utcnow
from smartcity.store.store import Store

__all__ = [
    "ACTIVE_STATES",
    "CLOSED_STATES",
    "EVENT_KINDS",
    "EVIDENCE_KINDS",
    "PERIODS",
    "STATES",
    "TRANSITIONS",
    "BucketRecord",
    "CameraRecord",
    "ConflictError",
    "DuplicateError",
    "EventRecord",
    "EvidenceExistsError",
    "EvidenceRecord",
    "IncidentRecord",
    "IngestCounters",
    "InvalidInputError",
    "InvalidTransitionError",
    "NotFoundError",
    "Page",
    "Store",
    "StoreError",
    "UnknownCameraError",
    "UnknownIncidentError",
    "combine",
    "floor_period",
    "utc_from_ns",
    "utcnow",
]
