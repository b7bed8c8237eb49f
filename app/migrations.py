"""Where this code's alembic migrations live, and which revision is their head."""

from functools import lru_cache
from pathlib import Path

from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

# alembic/ sits beside app/ in the checkout and in every release's source directory.
DEFAULT_SCRIPT_LOCATION = Path(__file__).resolve().parents[1] / "alembic"


def script_location(settings=None) -> str:
    return (settings or {}).get("alembic.script_location") or str(DEFAULT_SCRIPT_LOCATION)


def alembic_config(settings=None, ini_path: str | None = None) -> Config:
    config = Config(ini_path) if ini_path else Config()
    config.set_main_option("script_location", script_location(settings))
    if settings and settings.get("sqlalchemy.url"):
        config.set_main_option("sqlalchemy.url", settings["sqlalchemy.url"].replace("%", "%%"))
    return config


@lru_cache(maxsize=8)
def _heads(location: str) -> tuple[str, ...]:
    return tuple(ScriptDirectory(location).get_heads())


def code_heads(settings=None) -> tuple[str, ...]:
    return _heads(script_location(settings))


def database_revision(engine) -> str | None:
    """The database's alembic revision; None for a database never migrated.
    Raises SQLAlchemyError when the database does not answer."""
    with engine.connect() as connection:
        try:
            return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
        except SQLAlchemyError:
            if not connection.dialect.has_table(connection, "alembic_version"):
                return None
            raise
