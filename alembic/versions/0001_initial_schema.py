"""Initial schema: events, riders, wranglers, keyed addresses and links, the outbox.

Revision ID: 0001
Revises:
Create Date: 2026-11-21 18:57:02.890825
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "brevets",
        sa.Column("region", sa.String(length=2), nullable=False),
        sa.Column("distance", sa.Integer(), nullable=False),
        sa.Column("route_name", sa.String(length=100), nullable=False),
        sa.Column("alt_date_time", sa.DateTime(), nullable=True),
        sa.Column("info_question", sa.Text(), nullable=True),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("date_time", sa.DateTime(), nullable=False),
        sa.Column("start_locn", sa.String(length=200), nullable=False),
        sa.Column("start_map_url", sa.String(length=500), nullable=True),
        sa.Column("organizer_email", sa.String(length=500), nullable=False),
        sa.Column("registration_end", sa.DateTime(), nullable=False),
        sa.Column("uuid", sa.String(length=36), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_brevets")),
        sa.UniqueConstraint("region", "distance", "date_time", name=op.f("uq_brevets_region")),
        sa.UniqueConstraint("uuid", name=op.f("uq_brevets_uuid")),
    )
    op.create_table(
        "email_addresses",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=50), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_email_addresses")),
        sa.UniqueConstraint("key", name=op.f("uq_email_addresses_key")),
    )
    op.create_table(
        "links",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=50), nullable=False),
        sa.Column("url", sa.String(length=500), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_links")),
        sa.UniqueConstraint("key", name=op.f("uq_links_key")),
    )
    op.create_table(
        "outbound_emails",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("to_addrs", sa.Text(), nullable=False),
        sa.Column("reply_to", sa.Text(), nullable=True),
        sa.Column("subject", sa.String(length=300), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("claimed_at", sa.DateTime(), nullable=True),
        sa.Column("sent_at", sa.DateTime(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbound_emails")),
    )
    op.create_table(
        "populaires",
        sa.Column("event_name", sa.String(length=100), nullable=False),
        sa.Column("short_name", sa.String(length=20), nullable=False),
        sa.Column("distance", sa.String(length=50), nullable=False),
        sa.Column("entry_form_url", sa.String(length=500), nullable=True),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("date_time", sa.DateTime(), nullable=False),
        sa.Column("start_locn", sa.String(length=200), nullable=False),
        sa.Column("start_map_url", sa.String(length=500), nullable=True),
        sa.Column("organizer_email", sa.String(length=500), nullable=False),
        sa.Column("registration_end", sa.DateTime(), nullable=False),
        sa.Column("uuid", sa.String(length=36), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_populaires")),
        sa.UniqueConstraint("short_name", name=op.f("uq_populaires_short_name")),
        sa.UniqueConstraint("uuid", name=op.f("uq_populaires_uuid")),
    )
    op.create_table(
        "wranglers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("password_hash", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_wranglers")),
        sa.UniqueConstraint("email", name=op.f("uq_wranglers_email")),
    )
    op.create_table(
        "brevet_riders",
        sa.Column("brevet_id", sa.Integer(), nullable=False),
        sa.Column("bike_type", sa.String(length=20), nullable=False),
        sa.Column("member_status", sa.Boolean(), nullable=True),
        sa.Column("info_answer", sa.Text(), nullable=True),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("first_name", sa.String(length=50), nullable=False),
        sa.Column("last_name", sa.String(length=50), nullable=False),
        sa.Column("comment", sa.String(length=500), nullable=True),
        sa.Column("registered_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["brevet_id"],
            ["brevets.id"],
            name=op.f("fk_brevet_riders_brevet_id_brevets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_brevet_riders")),
        sa.UniqueConstraint(
            "brevet_id", "email", "first_name", "last_name", name=op.f("uq_brevet_riders_brevet_id")
        ),
    )
    with op.batch_alter_table("brevet_riders", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_brevet_riders_brevet_id"), ["brevet_id"], unique=False)

    op.create_table(
        "populaire_riders",
        sa.Column("populaire_id", sa.Integer(), nullable=False),
        sa.Column("distance", sa.String(length=20), nullable=True),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("first_name", sa.String(length=50), nullable=False),
        sa.Column("last_name", sa.String(length=50), nullable=False),
        sa.Column("comment", sa.String(length=500), nullable=True),
        sa.Column("registered_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["populaire_id"],
            ["populaires.id"],
            name=op.f("fk_populaire_riders_populaire_id_populaires"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_populaire_riders")),
        sa.UniqueConstraint(
            "populaire_id",
            "email",
            "first_name",
            "last_name",
            name=op.f("uq_populaire_riders_populaire_id"),
        ),
    )
    with op.batch_alter_table("populaire_riders", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_populaire_riders_populaire_id"), ["populaire_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("populaire_riders", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_populaire_riders_populaire_id"))

    op.drop_table("populaire_riders")
    with op.batch_alter_table("brevet_riders", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_brevet_riders_brevet_id"))

    op.drop_table("brevet_riders")
    op.drop_table("wranglers")
    op.drop_table("populaires")
    op.drop_table("outbound_emails")
    op.drop_table("links")
    op.drop_table("email_addresses")
    op.drop_table("brevets")
