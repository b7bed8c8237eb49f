"""Every migration goes down as well as up, and the models agree with the migrations."""

import subprocess
import sys

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from app import migrations
from app.models import metadata
from tests.conftest import ROOT


def config_for(url):
    config = migrations.alembic_config({"sqlalchemy.url": url})
    config.attributes["settings"] = {"sqlalchemy.url": url}
    return config


def test_upgrade_downgrade_upgrade_round_trip(tmp_path):
    url = f"sqlite:///{tmp_path / 'roundtrip.sqlite'}"
    config = config_for(url)
    command.upgrade(config, "head")
    command.downgrade(config, "base")
    engine = create_engine(url)
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    command.upgrade(config, "head")
    assert {"brevets", "populaires", "brevet_riders", "wranglers"} <= set(
        inspect(engine).get_table_names()
    )
    engine.dispose()


def test_models_and_migrations_agree(tmp_path):
    url = f"sqlite:///{tmp_path / 'compare.sqlite'}"
    command.upgrade(config_for(url), "head")
    engine = create_engine(url)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, metadata)
    engine.dispose()
    assert differences == [], f"models differ from the migrations: {differences}"


def test_single_head():
    assert len(migrations.code_heads()) == 1


def test_alembic_command_line_works_from_the_ini_files(tmp_path):
    url = f"sqlite:///{tmp_path / 'cli.sqlite'}"
    result = subprocess.run(
        [sys.executable, "-m", "alembic", "-c", str(ROOT / "staging.ini"), "upgrade", "head"],
        env={"RANDOPONY_DB_URL": url, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    engine = create_engine(url)
    with engine.connect() as connection:
        assert MigrationContext.configure(connection).get_current_heads() == migrations.code_heads()
    engine.dispose()
