"""Promoting staging to production on a real local host, under a client that keeps reading and
signing up through the router: no failed request, every registration kept exactly once, the
database carried forward and migrated, the old release stopped."""

import json
import sqlite3
import time

import pytest

from deploy import supervisor
from tests.deploy.riders import LoopingClient, Rider, riders_in

R1, R2 = "webapps/randopony2026r1", "webapps/randopony2026r2"

MIGRATION = '''"""Test migration: riders get an emergency phone.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("brevet_riders") as table:
        table.add_column(sa.Column("emergency_phone", sa.String(30), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("brevet_riders") as table:
        table.drop_column("emergency_phone")
'''


@pytest.fixture(scope="module")
def production(local_host):
    local_host.fab("init_staging", RANDOPONY_STAGING_RELEASE="2026r1")
    done = local_host.fab(
        "promote_staging_to_production", "--yes", "--demo", RANDOPONY_STAGING_RELEASE="2026r1"
    )
    assert "Production is 2026r1" in done.stdout
    return local_host


def test_first_promotion_puts_staging_in_production(production):
    up = Rider(production).get("/up").json()
    assert (up["release"], up["status"]) == ("2026r1", "ok")
    roles = json.loads((production.root / "deploy/roles.json").read_text())
    assert roles["production"] == "2026r1" and roles["staging"] is None
    assert (production.root / R1 / "production.ini").is_symlink()
    assert not (production.root / R1 / "staging.ini").exists()
    assert not (production.root / R1 / "RandoPony-staging.sqlite").exists()


def test_second_promotion_under_load_loses_nothing(production):
    rider = Rider(production)
    event = rider.event()
    before = [f"before{i}@example.org" for i in range(3)]
    for email in before:
        assert rider.sign_up(event, email).status_code == 302

    (production.checkout / "alembic/versions/0003_test_emergency_phone.py").write_text(MIGRATION)
    r2 = dict(RANDOPONY_STAGING_RELEASE="2026r2", RANDOPONY_PRODUCTION_RELEASE="2026r1")
    production.fab("init_staging", **r2)

    before_plan = production.tree()
    plan = production.fab("promote_staging_to_production", "--plan", **r2).stdout
    assert (
        "replacing randopony2026r1" in plan
        and ". hold_writes" in plan
        and "precopy_databases" in plan
    )
    assert production.tree() == before_plan  # --plan changes nothing

    client = LoopingClient(production, event, "during")
    client.start()
    time.sleep(1)
    done = production.fab("promote_staging_to_production", "--yes", **r2)
    time.sleep(1)
    client.stop.set()
    client.join(60)

    assert "Production is 2026r2" in done.stdout
    assert client.failures == [], client.failures
    assert client.requests > 20 and len(client.signed_up) > 5
    stored = riders_in(production.root / R2 / "RandoPony-production.sqlite")
    for email in before + client.signed_up:
        assert stored.count(email) == 1, email
    with sqlite3.connect(production.root / R2 / "RandoPony-production.sqlite") as db:
        columns = [row[1] for row in db.execute("PRAGMA table_info(brevet_riders)")]
        assert "emergency_phone" in columns
    assert Rider(production).get("/up").json()["release"] == "2026r2"
    assert not supervisor.answers(production.root / R1 / "supervisor.sock")  # old release stopped
    history = [
        json.loads(line)
        for line in (production.root / "deploy/releases.log").read_text().splitlines()
    ]
    promotion = history[-1]
    assert promotion["event"] == "promote" and promotion["previous"] == "2026r1"
    assert promotion["write_hold_seconds"] > 0 and "copy_databases" in promotion["steps"]


def test_the_old_release_files_are_untouched_rollback_point(production):
    assert (production.root / R1 / "RandoPony-production.sqlite").exists()
    assert (production.root / R1 / "production.ini").is_symlink()


def test_promoting_with_nothing_on_staging_is_refused(production):
    before = production.tree()
    done = production.fab(
        "promote_staging_to_production",
        "--yes",
        check=False,
        RANDOPONY_PRODUCTION_RELEASE="2026r2",
        RANDOPONY_STAGING_RELEASE="2026r3",
    )
    assert done.returncode == 1 and "staging release is None" in done.stderr
    assert production.tree() == before


def test_a_second_promotion_is_refused_while_one_holds_the_lock(production):
    lock = production.root / "deploy/lock"
    lock.mkdir()
    (lock / "holder.json").write_text(
        json.dumps({"purpose": "promote", "release": "2026r9", "by": "ada@pony", "since": "now"})
    )
    try:
        done = production.fab("deploy_staging", check=False, RANDOPONY_STAGING_RELEASE="2026r3")
        assert done.returncode == 1 and "ada@pony" in done.stderr
        assert "Locked by ada@pony" in production.fab("unlock", "--yes").stdout
        assert not lock.exists()
    finally:
        if lock.exists():
            (lock / "holder.json").unlink()
            lock.rmdir()


def test_the_fabfile_must_agree_with_the_host_about_production(production):
    before = production.tree()
    done = production.fab(
        "promote_staging_to_production",
        "--yes",
        check=False,
        RANDOPONY_STAGING_RELEASE="2026r2",
        RANDOPONY_PRODUCTION_RELEASE="2026r1",
    )
    assert done.returncode == 1
    assert production.tree() == before


MIGRATION_4 = MIGRATION.replace('"0003"', '"0004"').replace('"0002"', '"0003"')
MIGRATION_4 = MIGRATION_4.replace("emergency_phone", "shirt_size").replace(
    "0003\nRevises", "0004\nRevises"
)


def test_rollback_under_load_keeps_every_registration(production):
    (production.checkout / "alembic/versions/0004_test_shirt_size.py").write_text(MIGRATION_4)
    r3 = dict(RANDOPONY_STAGING_RELEASE="2026r3", RANDOPONY_PRODUCTION_RELEASE="2026r2")
    rider = Rider(production)
    event = rider.event()
    assert rider.sign_up(event, "on-r2@example.org").status_code == 302
    production.fab("init_staging", **r3)
    production.fab("promote_staging_to_production", "--yes", **r3)
    assert rider.sign_up(event, "on-r3@example.org").status_code == 302

    client = LoopingClient(production, event, "rollback")
    client.start()
    time.sleep(1)
    done = production.fab("rollback_production", "--yes", RANDOPONY_PRODUCTION_RELEASE="2026r3")
    time.sleep(1)
    client.stop.set()
    client.join(90)

    assert "Production is 2026r2 again" in done.stdout
    assert client.failures == [], client.failures
    assert Rider(production).get("/up").json()["release"] == "2026r2"
    database = production.root / R2 / "RandoPony-production.sqlite"
    stored = riders_in(database)
    for email in ["on-r2@example.org", "on-r3@example.org", *client.signed_up]:
        assert stored.count(email) == 1, email
    with sqlite3.connect(database) as db:
        columns = [row[1] for row in db.execute("PRAGMA table_info(brevet_riders)")]
        assert "shirt_size" not in columns and "emergency_phone" in columns
        assert db.execute("SELECT version_num FROM alembic_version").fetchone()[0] == "0003"
    roles = json.loads((production.root / "deploy/roles.json").read_text())
    assert roles["production"] == "2026r2" and "2026r3" in roles["bad"]
    again = production.fab(
        "rollback_production", "--yes", check=False, RANDOPONY_PRODUCTION_RELEASE="2026r2"
    )
    assert again.returncode == 1 and "no previous production release" in again.stderr
