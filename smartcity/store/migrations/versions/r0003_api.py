"""the API: users' camera scope and lock-out, login sessions, scoped expiring API keys,
hash-chained audit log, webhooks and their delivery log, imported crash records

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("cameras", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("password_changed_at", _TS, nullable=True))
        batch.add_column(
            sa.Column("failed_logins", sa.Integer(), server_default="0", nullable=False)
        )
        batch.add_column(sa.Column("locked_until", _TS, nullable=True))
        batch.create_check_constraint(
            op.f("ck_users_role"), "role IN ('viewer', 'operator', 'maintenance', 'admin')"
        )
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("scopes", sa.JSON(), server_default="[]", nullable=False))
        batch.add_column(sa.Column("cameras", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("expires_at", _TS, nullable=True))
        batch.add_column(sa.Column("rate_per_min", sa.Integer(), nullable=True))
    with op.batch_alter_table("audit_log") as batch:
        batch.add_column(sa.Column("ip", sa.String(length=64), nullable=True))
        batch.add_column(
            sa.Column("outcome", sa.String(length=16), server_default="ok", nullable=False)
        )
        batch.add_column(sa.Column("prev_hash", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("hash", sa.String(length=64), nullable=True))

    op.create_table(
        "auth_sessions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("csrf", sa.String(length=64), nullable=True),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("expires_at", _TS, nullable=False),
        sa.Column("ip", sa.String(length=64), nullable=True),
        sa.CheckConstraint("kind IN ('cookie', 'bearer')", name=op.f("ck_auth_sessions_kind")),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_auth_sessions_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_auth_sessions")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_auth_sessions_token_hash")),
    )
    with op.batch_alter_table("auth_sessions") as batch:
        batch.create_index(batch.f("ix_auth_sessions_user_id"), ["user_id"], unique=False)

    op.create_table(
        "webhooks",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("secret", sa.String(length=128), nullable=False),
        sa.Column("events", sa.JSON(), nullable=False),
        sa.Column("cameras", sa.JSON(), nullable=True),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=True),
        sa.Column("created_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhooks")),
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("webhook_id", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("event_type", sa.String(length=64), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", _TS, nullable=True),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("delivered_at", _TS, nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'delivered', 'failed')",
            name=op.f("ck_webhook_deliveries_status"),
        ),
        sa.ForeignKeyConstraint(
            ["webhook_id"],
            ["webhooks.id"],
            name=op.f("fk_webhook_deliveries_webhook_id_webhooks"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_deliveries")),
    )
    with op.batch_alter_table("webhook_deliveries") as batch:
        batch.create_index(
            "ix_webhook_deliveries_status_next_attempt_at",
            ["status", "next_attempt_at"],
            unique=False,
        )
        batch.create_index(
            "ix_webhook_deliveries_webhook_id_id", ["webhook_id", "id"], unique=False
        )

    op.create_table(
        "crash_records",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("occurred_at", _TS, nullable=False),
        sa.Column("latitude", sa.Float(), nullable=False),
        sa.Column("longitude", sa.Float(), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("vehicles", sa.Integer(), nullable=True),
        sa.Column("casualties", sa.Integer(), nullable=True),
        sa.Column("road", sa.String(length=200), nullable=True),
        sa.Column("segment_id", sa.String(length=128), nullable=True),
        sa.Column("source", sa.String(length=128), nullable=False),
        sa.Column("source_ref", sa.String(length=128), nullable=True),
        sa.Column("row_hash", sa.String(length=64), nullable=False),
        sa.Column("imported_at", _TS, nullable=False),
        sa.CheckConstraint(
            "severity IN ('fatal', 'serious', 'minor', 'damage_only')",
            name=op.f("ck_crash_records_severity"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_crash_records")),
        sa.UniqueConstraint("row_hash", name=op.f("uq_crash_records_row_hash")),
    )
    with op.batch_alter_table("crash_records") as batch:
        batch.create_index("ix_crash_records_occurred_at", ["occurred_at"], unique=False)


def downgrade() -> None:
    op.drop_table("crash_records")
    op.drop_table("webhook_deliveries")
    op.drop_table("webhooks")
    op.drop_table("auth_sessions")
    with op.batch_alter_table("audit_log") as batch:
        for c in ("hash", "prev_hash", "outcome", "ip"):
            batch.drop_column(c)
    with op.batch_alter_table("api_keys") as batch:
        for c in ("rate_per_min", "expires_at", "cameras", "scopes"):
            batch.drop_column(c)
    with op.batch_alter_table("users") as batch:
        batch.drop_constraint(op.f("ck_users_role"), type_="check")
        for c in ("locked_until", "failed_logins", "password_changed_at", "cameras"):
            batch.drop_column(c)
