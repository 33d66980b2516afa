"""covering indexes for filtered incident pages

The API lists incidents newest first with filters on camera, type, state and severity; with the
filter columns in the index SQLite tests them without reading each row (bench/api.py: direct
query p99 193 -> 57 ms on 1,000,000 incidents).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_incidents_opened_at_id", table_name="incidents")
    op.drop_index("ix_incidents_camera_id_opened_at", table_name="incidents")
    op.create_index(
        "ix_incidents_opened_at_cover",
        "incidents",
        ["opened_at", "id", "type", "state", "severity", "camera_id"],
    )
    op.create_index(
        "ix_incidents_camera_id_opened_at_cover",
        "incidents",
        ["camera_id", "opened_at", "id", "type", "state", "severity"],
    )


def downgrade() -> None:
    op.drop_index("ix_incidents_camera_id_opened_at_cover", table_name="incidents")
    op.drop_index("ix_incidents_opened_at_cover", table_name="incidents")
    op.create_index("ix_incidents_camera_id_opened_at", "incidents", ["camera_id", "opened_at"])
    op.create_index("ix_incidents_opened_at_id", "incidents", ["opened_at", "id"])
