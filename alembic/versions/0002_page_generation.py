"""Page generation token: lets every process cache public pages until the data changes.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21 19:20:00
"""

import uuid

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    table = op.create_table(
        "page_generation",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token", sa.String(length=36), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_page_generation")),
    )
    op.bulk_insert(table, [{"id": 1, "token": str(uuid.uuid4())}])


def downgrade() -> None:
    op.drop_table("page_generation")
