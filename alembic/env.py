"""Alembic runs from the same ini files as the site: `alembic -c staging.ini upgrade head`."""

import os
from logging.config import fileConfig

from alembic import context
from pyramid.paster import get_appsettings

from app.models import get_engine, metadata

config = context.config


def database_settings() -> dict:
    # Called from code (initialize_RandoPony_db, the release machinery) with settings in hand,
    # or from the alembic command line with one of the project's ini files.
    if "settings" in config.attributes:
        settings = dict(config.attributes["settings"])
    elif config.config_file_name and "app:main" in config.file_config.sections():
        settings = dict(get_appsettings(config.config_file_name, name="main"))
        if config.file_config.has_section("formatters"):
            fileConfig(config.config_file_name, disable_existing_loggers=False)
    else:
        settings = {"sqlalchemy.url": config.get_main_option("sqlalchemy.url")}
    if os.environ.get("RANDOPONY_DB_URL"):
        settings["sqlalchemy.url"] = os.environ["RANDOPONY_DB_URL"]
    return settings


def run_migrations_offline() -> None:
    context.configure(
        url=database_settings()["sqlalchemy.url"],
        target_metadata=metadata,
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    # SQLite cannot ALTER most things; batch mode rebuilds the table instead, dropping the old
    # one, and a dropped events table with foreign keys enforced takes every rider with it (ON
    # DELETE CASCADE). So foreign keys are off while migrating, and checked before the commit.
    engine = get_engine(dict(database_settings(), **{"sqlite.foreign_keys": "off"}))
    try:
        with engine.connect() as connection:
            context.configure(
                connection=connection,
                target_metadata=metadata,
                render_as_batch=True,
                compare_type=True,
            )
            with context.begin_transaction():
                context.run_migrations()
                if connection.dialect.name == "sqlite":
                    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                    if broken:
                        raise RuntimeError(f"the migration broke foreign keys: {broken[:5]}")
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
