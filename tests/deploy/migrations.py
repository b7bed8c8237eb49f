"""Alembic migrations the deploy tests add to a checkout, as a developer would write them."""

TEMPLATE = '''"""Test migration: {title}.

Revision ID: {revision}
Revises: {down}
"""

{imports}

revision = "{revision}"
down_revision = "{down}"
branch_labels = None
depends_on = None


def upgrade() -> None:
{upgrade}


def downgrade() -> None:
{downgrade}
'''


def migration(title, revision, down, upgrade, downgrade, imports="from alembic import op") -> str:
    """The text of a migration file; `upgrade` and `downgrade` are their bodies' lines."""

    def body(lines: list[str]) -> str:
        return "\n".join("    " + line for line in lines)

    return TEMPLATE.format(
        title=title,
        revision=revision,
        down=down,
        imports=imports,
        upgrade=body(upgrade),
        downgrade=body(downgrade),
    )
