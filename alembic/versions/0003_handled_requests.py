"""Handled requests: a write the router sends again after an app process died is not done twice.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29 02:20:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "handled_requests",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("location", sa.String(length=2000), nullable=True),
        sa.Column("handled_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_handled_requests")),
    )
    op.create_index(
        op.f("ix_handled_requests_handled_at"), "handled_requests", ["handled_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_handled_requests_handled_at"), table_name="handled_requests")
    op.drop_table("handled_requests")
