"""Every migration goes down as well as up, and the models agree with the migrations."""

import shutil
import subprocess
import sys

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from app import migrations
from app.models import BrevetRider, metadata
from tests.conftest import ROOT, session_on
from tests.deploy.migrations import migration
from tests.factories import make_brevet, make_brevet_rider


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


def drop_a_brevet_column(down: str) -> str:
    """A column of brevets added, and dropped again going down (a table rebuild in SQLite)."""
    return migration(
        "a column of brevets added, and dropped again going down",
        "0099",
        down,
        upgrade=[
            'with op.batch_alter_table("brevets") as batch:',
            '    batch.add_column(sa.Column("note", sa.Text(), nullable=True))',
        ],
        downgrade=[
            'with op.batch_alter_table("brevets") as batch:',
            '    batch.drop_column("note")',
        ],
        imports="import sqlalchemy as sa\nfrom alembic import op",
    )


def test_a_migration_that_rebuilds_an_event_table_keeps_its_riders(tmp_path):
    """SQLite rebuilds a table to drop a column (alembic's batch mode): the old table is
    dropped, which with foreign keys enforced deletes every rider of it (ON DELETE CASCADE).
    Migrations therefore run with foreign keys off, and check them after."""
    scripts = tmp_path / "alembic"
    shutil.copytree(ROOT / "alembic", scripts, ignore=shutil.ignore_patterns("__pycache__"))
    head = migrations.code_heads()[0]
    (scripts / "versions" / "0099_test_note.py").write_text(drop_a_brevet_column(head))
    url = f"sqlite:///{tmp_path / 'riders.sqlite'}"
    config = config_for(url)
    config.set_main_option("script_location", str(scripts))
    command.upgrade(config, head)
    with session_on({"sqlalchemy.url": url}) as db:
        make_brevet_rider(db, make_brevet(db))
        db.commit()
    command.upgrade(config, "0099")
    command.downgrade(config, head)
    with session_on({"sqlalchemy.url": url}) as db:
        assert db.query(BrevetRider).count() == 1
