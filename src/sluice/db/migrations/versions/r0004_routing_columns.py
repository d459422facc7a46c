"""The request log's cache and routing columns (a response-cache hit or miss; the hops routing made).

Revision ID: 0004_routing_columns
Revises: 0003_prompt_templates
Create Date: 2026-12-02 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from sluice.db.tables import Body

revision: str = "0004_routing_columns"
down_revision: str | None = "0003_prompt_templates"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("request_logs") as batch:
        batch.add_column(sa.Column("cache", sa.String(8), nullable=True))
        batch.add_column(sa.Column("routing", Body, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("request_logs") as batch:
        batch.drop_column("routing")
        batch.drop_column("cache")
