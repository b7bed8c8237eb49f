"""Faults injected into promotions on a real local host: the promoting process killed (kill -9,
as `os._exit`) at every step boundary and the promotion finished by `--resume` or undone by
`fab rollback_production`; a rollback killed at its boundaries and resumed; a failing migration
and a release failing its health check undone on the spot. Production serves all along and no
registration is lost."""

import itertools
import json
import re
from types import SimpleNamespace

import pytest

from deploy import promote
from tests.deploy.riders import STAGING, LoopingClient, Rider, held_writes_only, riders_in

CRASH = "RANDOPONY_TEST_CRASH_AFTER_STEP"


def releases(staging, production):
    return dict(RANDOPONY_STAGING_RELEASE=staging, RANDOPONY_PRODUCTION_RELEASE=production)


def step_names(steps, **state):
    """The steps that apply to a run in the given state, in order."""
    p = SimpleNamespace(**{"new": "2026r9", "old": "2026r8", "undo": None, **state})
    return [step.name for step in steps if step.applies(p)]


PROMOTION = step_names(promote.STEPS)
BEFORE_SWITCH = PROMOTION[: PROMOTION.index("switch_domain")]
FULL_ROLLBACK = step_names(promote.ROLLBACK_STEPS)
UNDO = step_names(promote.ROLLBACK_STEPS, undo=["stop_staging"])


def release_db(host, release):
    return host.root / f"webapps/randopony{release}/RandoPony-production.sqlite"


def state_file(host):
    return host.root / "deploy/promotion.json"


def serving(host, domain=None):
    rider = Rider(host) if domain is None else Rider(host, domain)
    answer = rider.get("/up")
    assert answer.status_code == 200, answer.text[:300]
    return answer.json()["release"]


def crash(host, *args, at, **env):
    done = host.fab(*args, check=False, **{CRASH: at}, **env)
    assert done.returncode == 9, f"{args} did not stop at {at}:\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def production(local_host):
    local_host.fab("init_staging", **releases("2026r1", ""))
    local_host.fab("promote_staging_to_production", "--yes", "--demo", **releases("2026r1", ""))
    rider = Rider(local_host)
    local_host.event = rider.event()
    assert rider.sign_up(local_host.event, "first@example.org").status_code == 302
    return local_host


WRITERS = itertools.count(1)


@pytest.fixture
def load(production):
    """A reader and a writer through the router, for the length of a test."""
    clients = [
        LoopingClient(production, production.event, "reader", reads_only=True),
        LoopingClient(production, production.event, f"writer{next(WRITERS)}-"),
    ]
    for client in clients:
        client.start()
    yield clients
    for client in clients:
        client.stop.set()
        client.join(120)


def settle(load):
    """Stop the clients. Reads never failed; a write either went through (and is returned, to be
    looked for) or was held by the router past its limit while a killed run waited for the
    next command (a 503 the rider may send again): never a half-done or refused one."""
    reader, writer = load
    for client in load:
        client.stop.set()
        client.join(120)
    assert reader.failures == [], reader.failures[:3]
    assert held_writes_only(writer.failures), writer.failures[:3]
    assert reader.requests > 5 and writer.signed_up
    return writer.signed_up


def test_the_steps_cover_the_seed_guide_and_both_ways_of_undoing():
    assert PROMOTION[0] == "stop_staging" and PROMOTION[-1] == "record_promotion"
    assert "init_production_db" not in PROMOTION and "copy_databases" in BEFORE_SWITCH
    assert "copy_back" in FULL_ROLLBACK and "copy_back" not in UNDO
    assert "return_to_staging" in UNDO


def test_a_promotion_killed_at_every_step_is_finished_by_resume(production, load):
    r2 = releases("2026r2", "2026r1")
    production.fab("init_staging", **r2)
    for number, boundary in enumerate(["start", *PROMOTION]):
        resume = ["--resume"] if number else []
        crash(production, "promote_staging_to_production", "--yes", *resume, at=boundary, **r2)
        state = json.loads(state_file(production).read_text())
        assert state["done"] == PROMOTION[:number], boundary
        assert serving(production) in ("2026r1", "2026r2")
        if boundary == "copy_databases":  # once is enough: a plain promote is refused meanwhile
            again = production.fab("promote_staging_to_production", "--yes", check=False, **r2)
            assert again.returncode == 1 and "--resume" in again.stderr
    done = production.fab("promote_staging_to_production", "--resume", **r2)
    assert "Production is 2026r2" in done.stdout
    signed_up = settle(load)
    assert serving(production) == "2026r2"
    stored = riders_in(release_db(production, "2026r2"))
    for email in ["first@example.org", *signed_up]:
        assert stored.count(email) == 1, email
    assert not state_file(production).exists()
    assert not (production.root / "deploy/lock").exists()
    roles = json.loads((production.root / "deploy/roles.json").read_text())
    assert (roles["production"], roles["previous"]) == ("2026r2", "2026r1")


def test_a_promotion_killed_before_the_domain_moves_is_undone_by_rollback(production, load):
    """Killed at each boundary before the switch, then `fab rollback_production`: production
    goes on as it was, and the release is staging again, with its own data, ready to promote."""
    r3 = releases("2026r3", "2026r2")
    production.fab("init_staging", **r3)
    for boundary in ["start", *BEFORE_SWITCH]:
        crash(production, "promote_staging_to_production", "--yes", at=boundary, **r3)
        assert serving(production) == "2026r2"
        undone = production.fab("rollback_production", "--yes", **r3)
        assert "is undone: production is 2026r2 as before" in undone.stdout, boundary
        assert serving(production) == "2026r2"
        assert serving(production, STAGING) == "2026r3", boundary
        roles = json.loads((production.root / "deploy/roles.json").read_text())
        assert (roles["production"], roles["staging"]) == ("2026r2", "2026r3")
        assert not release_db(production, "2026r3").exists()  # production's data not left there
        assert not state_file(production).exists()
        assert "2026r3" not in roles.get("bad", [])
    signed_up = settle(load)
    stored = riders_in(release_db(production, "2026r2"))
    for email in ["first@example.org", *signed_up]:
        assert stored.count(email) == 1, email
    # Staging was put back as it was: its own database, not production's.
    staging_db = production.root / "webapps/randopony2026r3/RandoPony-staging.sqlite"
    assert "first@example.org" not in riders_in(staging_db)


@pytest.mark.parametrize("boundary", PROMOTION[PROMOTION.index("switch_domain") :])
def test_a_promotion_killed_after_the_domain_moved_is_rolled_back(production, load, boundary):
    """The new release has taken writes: the rollback copies them back to the previous
    release. The rollback itself is killed at each of its boundaries and resumed."""
    number = 4 + PROMOTION.index(boundary) - PROMOTION.index("switch_domain")
    release = f"2026r{number}"
    before = releases(release, "2026r2")
    production.fab("init_staging", **before)
    crash(production, "promote_staging_to_production", "--yes", at=boundary, **before)
    assert serving(production) == release
    rider = Rider(production)
    assert rider.sign_up(production.event, f"on-{release}@example.org").status_code == 302
    chain = FULL_ROLLBACK if boundary == "switch_domain" else []  # once is enough
    for done, step in enumerate(["start", *chain]):
        resume = ["--resume"] if done else []
        crash(production, "rollback_production", "--yes", *resume, at=f"rollback:{step}", **before)
        assert serving(production) in ("2026r2", release)
    rolled = production.fab("rollback_production", "--yes", "--resume", **before)
    assert "Production is 2026r2 again" in rolled.stdout
    signed_up = settle(load)
    assert serving(production) == "2026r2"
    stored = riders_in(release_db(production, "2026r2"))
    for email in ["first@example.org", f"on-{release}@example.org", *signed_up]:
        assert stored.count(email) == 1, email
    roles = json.loads((production.root / "deploy/roles.json").read_text())
    assert roles["production"] == "2026r2" and release in roles["bad"]
    assert not state_file(production).exists()


FAILING_MIGRATION = '''"""Test migration: one brevet per rider (fails on production data).

Revision ID: 0003
Revises: 0002
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_test_one_brevet_per_rider", "brevet_riders", ["email"], unique=True)


def downgrade() -> None:
    op.drop_index("ix_test_one_brevet_per_rider", "brevet_riders")
'''


def test_failures_before_the_switch_leave_production_as_it_was(production, load):
    """A migration that fails on production's data, then a release that fails its health check:
    each stops before the domain moves, production goes on (writes too), and the release is
    back on staging to be mended; mended, it is promoted."""
    rider = Rider(production)
    brevets = rider.get("/brevets/").text
    other = re.findall(r'href="http://[^"/]+(/brevets/VI/[^"]+)"', brevets)
    assert other, "the demo's VI300 is on /brevets/"
    for event in (production.event, other[0]):
        assert rider.sign_up(event, "twice@example.org").status_code == 302
    r8 = releases("2026r8", "2026r2")
    migration = production.checkout / "alembic/versions/0003_test_one_brevet_per_rider.py"
    migration.write_text(FAILING_MIGRATION)
    production.fab("init_staging", **r8)  # staging's demo data passes the migration

    failed = production.fab("promote_staging_to_production", "--yes", check=False, **r8)
    assert failed.returncode == 1
    assert "migrate_database failed" in failed.stderr and "UNIQUE" in failed.stderr
    assert "production is 2026r2, as before" in failed.stderr
    assert serving(production) == "2026r2" and serving(production, STAGING) == "2026r8"
    assert rider.sign_up(production.event, "after-migration@example.org").status_code == 302

    migration.unlink()
    ini = production.checkout / "production.ini"
    good = ini.read_text()
    ini.write_text(good.replace("[app:main]", "[app:main]\npyramid.includes = no_such_addon", 1))
    production.fab("deploy_staging", **r8)
    failed = production.fab("promote_staging_to_production", "--yes", check=False, **r8)
    assert failed.returncode == 1
    assert "start_new_release failed" in failed.stderr, failed.stderr
    assert "production is 2026r2, as before" in failed.stderr
    assert serving(production) == "2026r2" and serving(production, STAGING) == "2026r8"
    assert rider.sign_up(production.event, "after-health@example.org").status_code == 302

    ini.write_text(good)
    production.fab("deploy_staging", **r8)
    production.fab("promote_staging_to_production", "--yes", **r8)
    signed_up = settle(load)
    assert serving(production) == "2026r8"
    stored = riders_in(release_db(production, "2026r8"))
    for email in ["after-migration@example.org", "after-health@example.org", *signed_up]:
        assert stored.count(email) == 1, email
    assert stored.count("twice@example.org") == 2
