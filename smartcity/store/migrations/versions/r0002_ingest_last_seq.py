"""ingest counters remember the last tracks sequence number

The incidents service stores the last `seq` it handled per camera, so that after a restart the
tracks messages published while it was down are counted as missed.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("ingest_counters") as batch:
        batch.add_column(sa.Column("last_seq", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("ingest_counters") as batch:
        batch.drop_column("last_seq")
