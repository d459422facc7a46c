"""The service_instances table (instances added, removed, drained or restored through the admin API).

Revision ID: 0005_service_instances
Revises: 0004_routing_columns
Create Date: 2026-12-02 15:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from sluice.db.tables import UTCDateTime

revision: str = "0005_service_instances"
down_revision: str | None = "0004_routing_columns"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "service_instances",
        sa.Column("service", sa.String(128), primary_key=True),
        sa.Column("url", sa.String(1024), primary_key=True),
        sa.Column("weight", sa.Float(), nullable=True),
        sa.Column("removed", sa.Boolean(), nullable=False),
        sa.Column("draining", sa.Boolean(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("service_instances")
