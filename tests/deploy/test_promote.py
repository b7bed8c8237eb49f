"""Promoting staging to production on a real local host, under a client that keeps reading and
signing up through the router: no failed request, every registration kept exactly once, the
database carried forward and migrated, the old release stopped."""

import json
import re
import sqlite3
import threading
import time

import pytest
import requests

from deploy import supervisor

PRODUCTION = "randopony.localhost"
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


class Rider:
    """A browser on the production domain: reads pages, signs up with fresh addresses."""

    def __init__(self, host):
        self.host = host
        self.browser = requests.Session()
        self.headers = {"Host": f"{PRODUCTION}:{host.router_port}"}

    def get(self, path):
        return self.browser.get(
            self.host.url(path), headers=self.headers, timeout=60, allow_redirects=False
        )

    def event(self):
        page = self.get("/brevets/")
        found = re.search(r'href="http://[^"/]+(/brevets/LM/200/[^"]+)"', page.text)
        assert found, f"no LM200 event on /brevets/ ({page.status_code}): {page.text[:500]}"
        return found.group(1)

    def sign_up(self, event, email):
        form = self.get(event + "/entry")
        token = re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)
        return self.browser.post(
            self.host.url(event + "/entry"),
            headers=self.headers,
            data={
                "csrf_token": token,
                "email": email,
                "first_name": "Loop",
                "last_name": email.split("@")[0],
                "bike_type": "single",
            },
            timeout=60,
            allow_redirects=False,
        )


class LoopingClient(threading.Thread):
    """GETs and sign-up POSTs in a loop until stopped; counts every failure."""

    def __init__(self, host, event, prefix):
        super().__init__(daemon=True)
        self.rider, self.event, self.prefix = Rider(host), event, prefix
        self.stop = threading.Event()
        self.failures, self.signed_up, self.requests = [], [], 0

    def run(self):
        n = 0
        while not self.stop.is_set():
            n += 1
            email = f"{self.prefix}{n}@example.org"
            try:
                page = self.rider.get(self.event)
                answer = self.rider.sign_up(self.event, email)
                self.requests += 3
                if page.status_code != 200:
                    self.failures.append(("GET", page.status_code))
                if answer.status_code == 302:
                    self.signed_up.append(email)
                else:
                    self.failures.append(("POST", answer.status_code, email))
            except requests.RequestException as error:
                self.failures.append(("error", str(error)))


def riders_in(path):
    with sqlite3.connect(path) as db:
        return [row[0] for row in db.execute("SELECT email FROM brevet_riders")]


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


def test_a_promotion_killed_under_the_hold_is_finished_by_resume(production):
    """kill -9 right after the database copy, with writes held: reads go on, and --resume
    finishes with every registration kept."""
    rider = Rider(production)
    event = rider.event()
    assert rider.sign_up(event, "before-crash@example.org").status_code == 302
    r3 = dict(RANDOPONY_STAGING_RELEASE="2026r3", RANDOPONY_PRODUCTION_RELEASE="2026r2")
    production.fab("init_staging", **r3)
    crashed = production.fab(
        "promote_staging_to_production",
        "--yes",
        check=False,
        RANDOPONY_TEST_CRASH_AFTER_STEP="copy_databases",
        **r3,
    )
    assert crashed.returncode == 9
    assert Rider(production).get("/up").json()["release"] == "2026r2"  # reads still served
    again = production.fab("promote_staging_to_production", "--yes", check=False, **r3)
    assert again.returncode == 1 and "--resume" in again.stderr

    writer = LoopingClient(production, event, "resumed")
    writer.start()  # writes wait at the router until the resumed promotion releases them
    done = production.fab("promote_staging_to_production", "--resume", **r3)
    time.sleep(1)
    writer.stop.set()
    writer.join(90)
    assert "Production is 2026r3" in done.stdout
    assert writer.failures == [], writer.failures
    stored = riders_in(production.root / "webapps/randopony2026r3/RandoPony-production.sqlite")
    for email in ["before-crash@example.org", *writer.signed_up]:
        assert stored.count(email) == 1, email
    assert not (production.root / "deploy/promotion.json").exists()


MIGRATION_4 = MIGRATION.replace('"0003"', '"0004"').replace('"0002"', '"0003"')
MIGRATION_4 = MIGRATION_4.replace("emergency_phone", "shirt_size").replace(
    "0003\nRevises", "0004\nRevises"
)


def test_rollback_under_load_keeps_every_registration(production):
    (production.checkout / "alembic/versions/0004_test_shirt_size.py").write_text(MIGRATION_4)
    r4 = dict(RANDOPONY_STAGING_RELEASE="2026r4", RANDOPONY_PRODUCTION_RELEASE="2026r3")
    production.fab("init_staging", **r4)
    production.fab("promote_staging_to_production", "--yes", **r4)
    rider = Rider(production)
    event = rider.event()
    assert rider.sign_up(event, "on-r4@example.org").status_code == 302

    client = LoopingClient(production, event, "rollback")
    client.start()
    time.sleep(1)
    done = production.fab("rollback_production", "--yes", RANDOPONY_PRODUCTION_RELEASE="2026r4")
    time.sleep(1)
    client.stop.set()
    client.join(90)

    assert "Production is 2026r3 again" in done.stdout
    assert client.failures == [], client.failures
    assert Rider(production).get("/up").json()["release"] == "2026r3"
    database = production.root / "webapps/randopony2026r3/RandoPony-production.sqlite"
    stored = riders_in(database)
    for email in ["before-crash@example.org", "on-r4@example.org", *client.signed_up]:
        assert stored.count(email) == 1, email
    with sqlite3.connect(database) as db:
        columns = [row[1] for row in db.execute("PRAGMA table_info(brevet_riders)")]
        assert "shirt_size" not in columns and "emergency_phone" in columns
        assert db.execute("SELECT version_num FROM alembic_version").fetchone()[0] == "0003"
    roles = json.loads((production.root / "deploy/roles.json").read_text())
    assert roles["production"] == "2026r3" and "2026r4" in roles["bad"]
    again = production.fab(
        "rollback_production", "--yes", check=False, RANDOPONY_PRODUCTION_RELEASE="2026r3"
    )
    assert again.returncode == 1 and "no previous production release" in again.stderr
