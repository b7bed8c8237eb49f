"""Promoting staging to production on a real local host (panel, router, releases under their own
supervisord), under clients that keep reading and signing up through the router.

In order, on one host: a first promotion; a second one under load with a migration; refusals; a
rollback under load; a promotion stopped at every step boundary and finished by `--resume`
(killed with kill -9, as `os._exit`, at the start, inside a step, under the hold and right after
the switch; cut off in-process at the others); killed at each boundary before the domain moves
and undone by `fab rollback_production`; killed at each boundary after it and rolled back, the
rollback itself killed and resumed; a failing migration and a release failing its health check,
undone on the spot. Production serves all along, no registration is lost, organizers' rider lists
go along with the data, and every run is measured against its plan."""

import configparser
import itertools
import json
import os
import re
import sqlite3
import stat
import subprocess
from contextlib import contextmanager
from types import SimpleNamespace

import pytest

from deploy.flows import cleanup, promote
from deploy.flows.steps import StepFailed, run_steps
from deploy.host import supervisor
from deploy.remote import file_mirror, records
from deploy.remote.panel_client import HostingAPI
from deploy.remote.target import Target, hosting_session
from tests.deploy.conftest import HOSTING_PASSWORD, WRANGLER_PASSWORD
from tests.deploy.in_process import cut_off
from tests.deploy.migrations import migration
from tests.deploy.riders import (
    STAGING,
    LoopingClient,
    Rider,
    held_writes_only,
    riders_in,
    wait_until,
)

R1, R2 = "webapps/randopony2026r1", "webapps/randopony2026r2"
CRASH = "RANDOPONY_TEST_CRASH_AFTER_STEP"

MIGRATION = migration(
    "riders get an emergency phone",
    "0005",
    "0004",
    [
        'with op.batch_alter_table("brevet_riders") as table:',
        '    table.add_column(sa.Column("emergency_phone", sa.String(30), nullable=True))',
    ],
    [
        'with op.batch_alter_table("brevet_riders") as table:',
        '    table.drop_column("emergency_phone")',
    ],
    imports="import sqlalchemy as sa\nfrom alembic import op",
)


def releases(staging, production):
    return dict(RANDOPONY_STAGING_RELEASE=staging, RANDOPONY_PRODUCTION_RELEASE=production)


def step_names(steps, **state):
    """The steps that apply to a run in the given state, in order."""
    p = SimpleNamespace(**{"incoming": "2026r9", "outgoing": "2026r8", "undo": None, **state})
    return [step.name for step in steps if step.applies(p)]


PROMOTION = step_names(promote.STEPS)
BEFORE_SWITCH = PROMOTION[: PROMOTION.index("switch_domain")]
AFTER_SWITCH = PROMOTION[PROMOTION.index("switch_domain") :]
# --resume is tested after a kill at every boundary in one chain (cheap). An undo or a rollback
# ends the promotion, so each boundary costs a promotion of its own: by default the boundaries
# where the undo does something different (before any change to production, with writes held
# and the old worker stopped, with the new app started; right after the switch, and after the
# promotion was recorded), and every boundary with RANDOPONY_EVERY_BOUNDARY=1 (about 4 minutes
# more).
EVERY_BOUNDARY = os.environ.get("RANDOPONY_EVERY_BOUNDARY") == "1"
UNDO_AT = (
    ["start", *BEFORE_SWITCH] if EVERY_BOUNDARY else ["start", "hold_writes", "start_new_release"]
)
ROLLBACK_AFTER = AFTER_SWITCH if EVERY_BOUNDARY else [AFTER_SWITCH[0], AFTER_SWITCH[-1]]
FULL_ROLLBACK = step_names(promote.ROLLBACK_STEPS)
UNDO = step_names(promote.ROLLBACK_STEPS, undo=["stop_staging"])


def release_db(host, release):
    return host.root / f"webapps/randopony{release}/RandoPony-production.sqlite"


def rider_lists(host, release):
    return host.root / f"webapps/randopony{release}/rider_lists"


def estimated(plan):
    """{step: seconds} and the total, from the checklist `--plan` prints."""
    steps = {
        name: float(value) * (60 if unit == "min" else 1)
        for name, value, unit in re.findall(
            r"^\s+\d+\. (\w+)\s+pending\s+([\d.]+) (s|min)", plan, re.MULTILINE
        )
    }
    total = re.search(r"Estimated: ([\d.]+) s in all", plan)
    return steps, float(total.group(1))


def state_file(host):
    return host.root / "deploy/promotion.json"


def roles(host):
    return json.loads((host.root / "deploy/roles.json").read_text())


def serving(host, domain=None):
    rider = Rider(host) if domain is None else Rider(host, domain)
    answer = rider.get("/up")
    assert answer.status_code == 200, answer.text[:300]
    return answer.json()["release"]


def session_secret(host, release):
    credentials = host.root / "webapps" / f"randopony{release}" / "private_credentials"
    assert stat.S_IMODE(credentials.stat().st_mode) == 0o400
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(credentials.read_text())
    return parser["credentials"]["session_secret"]


def role_secret(host, release):
    """PONY_ROLE_SECRET as the release's supervisord.conf (0600) hands it to its programs."""
    conf = host.root / "webapps" / f"randopony{release}" / "supervisord.conf"
    assert stat.S_IMODE(conf.stat().st_mode) == 0o600
    found = set(re.findall(r'PONY_ROLE_SECRET="([^"]*)"', conf.read_text()))
    assert len(found) == 1, found
    return found.pop()


@contextmanager
def running_process():
    """A process of this user on this machine that runs until the block ends: what the lock of
    a release operation still under way names."""
    process = subprocess.Popen(["sleep", "infinity"])
    try:
        yield process.pid
    finally:
        process.kill()
        process.wait()


@contextmanager
def lock_held_while_running(host, purpose, release):
    """The host's lock, held by another release operation that is still running."""
    lock = host.root / "deploy/lock"
    with running_process() as pid:
        lock.mkdir()
        holder = {"purpose": purpose, "release": release, "by": records.who(), "pid": pid}
        (lock / "holder.json").write_text(json.dumps({**holder, "since": records.now()}))
        try:
            yield pid
        finally:
            (lock / "holder.json").unlink()
            lock.rmdir()


def panel(host):
    api = HostingAPI(f"http://127.0.0.1:{host.panel_port}/")
    api.login("randopony", HOSTING_PASSWORD)
    return api


def crash(host, *args, at, **env):
    done = host.fab(*args, check=False, **{CRASH: at}, **env)
    assert done.returncode == 9, f"{args} did not stop at {at}:\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def production(local_host):
    local_host.fab("init_staging", **releases("2026r1", ""))
    done = local_host.fab(
        "promote_staging_to_production", "--yes", "--demo", **releases("2026r1", "")
    )
    assert "Production is 2026r1" in done.stdout
    local_host.event = Rider(local_host).event()
    return local_host


WRITERS = itertools.count(1)


@pytest.fixture
def load(production):
    """A reader and a writer through the router, for the length of a test: riders, at a pace
    that leaves the two cores to the releases (the second promotion's test is the one under
    full load)."""
    clients = [
        LoopingClient(production, production.event, "reader", reads_only=True, pause=0.1),
        LoopingClient(production, production.event, f"writer{next(WRITERS)}-", pause=0.2),
    ]
    for client in clients:
        client.start()
    yield clients
    for client in clients:
        client.stop.set()
        client.join(120)


def settle(load, crashed=False):
    """Stop the clients and return what the writer signed up. Reads never fail. Writes never
    fail either, except (when runs were killed) a write the router held past its limit while a
    killed run waited for the next command: a 503 the rider may send again, never a half-done
    or refused one."""
    reader, writer = load
    wait_until(lambda: reader.requests and writer.signed_up, "the load to be served")
    for client in load:
        client.stop.set()
        client.join(120)
    assert reader.failures == [], reader.failures[:3]
    if crashed:
        assert held_writes_only(writer.failures), writer.failures[:3]
    else:
        assert writer.failures == [], writer.failures[:3]
    return writer.signed_up


def assert_stored_once(database, emails):
    stored = riders_in(database)
    for email in emails:
        assert stored.count(email) == 1, email


def test_the_steps_cover_the_seed_guide_and_both_ways_of_undoing():
    assert PROMOTION[0] == "stop_staging" and PROMOTION[-1] == "record_promotion"
    assert "init_production_db" not in PROMOTION and "copy_databases" in BEFORE_SWITCH
    assert "copy_back" in FULL_ROLLBACK and "copy_back" not in UNDO
    assert "return_to_staging" in UNDO
    # Files as Wikimedia moved mailman's lists: once before the hold, then only the diff.
    order = PROMOTION.index
    assert order("precopy_files") < order("stop_old_worker") < order("hold_writes")
    assert order("copy_databases") < order("copy_files") < order("switch_domain")
    # The incoming app starts before the hold; under it, it only opens its data.
    assert order("start_standby") < order("hold_writes") < order("start_new_release")
    order = FULL_ROLLBACK.index
    assert order("precopy_files_back") < order("hold_writes") < order("copy_files_back")
    assert order("start_previous_standby") < order("hold_writes") < order("start_previous_release")
    assert "copy_files_back" not in UNDO


def test_rsync_stats_are_read():
    output = """
Number of files: 5 (reg: 4, dir: 1)
Number of regular files transferred: 3
Total file size: 1,234,567 bytes
Total transferred file size: 4,321 bytes
"""
    assert file_mirror.rsync_stats(output) == {"files": 3, "total": 1234567, "sent": 4321}
    assert file_mirror.rsync_stats("") == {"files": 0, "total": 0, "sent": 0}


def test_first_promotion_puts_staging_in_production(production):
    up = Rider(production).get("/up").json()
    assert (up["release"], up["status"]) == ("2026r1", "ok")
    assert roles(production)["production"] == "2026r1" and roles(production)["staging"] is None
    assert (production.root / R1 / "production.ini").is_symlink()
    assert not (production.root / R1 / "staging.ini").exists()
    assert not (production.root / R1 / "RandoPony-staging.sqlite").exists()
    assert not (production.root / R1 / promote.ASIDE).exists()


def test_second_promotion_under_load_loses_nothing(production):
    rider = Rider(production)
    event = rider.event()
    before = [f"before{i}@example.org" for i in range(3)]
    for email in before:
        assert rider.sign_up(event, email).status_code == 302

    (production.checkout / "alembic/versions/0005_test_emergency_phone.py").write_text(MIGRATION)
    r2 = dict(RANDOPONY_STAGING_RELEASE="2026r2", RANDOPONY_PRODUCTION_RELEASE="2026r1")
    # A developer's checkout holds a private_credentials of its own (initialize_RandoPony_db
    # makes one): no release may take its session secret.
    # Each role's own env file reaches only that role's release (secrets live there).
    for role in ("staging", "production"):
        (production.root / "deploy" / f"{role}.env").write_text(f"PONY_ROLE_SECRET={role}-only\n")
    developer_credentials = production.checkout / "private_credentials"
    developer_credentials.write_text("[credentials]\nsession_secret = the-developers-own\n")
    try:
        production.fab("init_staging", **r2)
    finally:
        developer_credentials.unlink()
    assert role_secret(production, "2026r2") == "staging-only"
    production_secret = session_secret(production, "2026r1")
    assert session_secret(production, "2026r2") not in (production_secret, "the-developers-own")
    # A wrangler logged in on staging is not logged in on production with staging's cookie.
    wrangler = Rider(production, STAGING)
    assert wrangler.log_in("wrangler@example.com", WRANGLER_PASSWORD).status_code == 302
    assert wrangler.get("/admin/").status_code == 200
    on_production = Rider(production)
    on_production.browser.cookies.update(wrangler.browser.cookies)
    assert on_production.get("/admin/").status_code != 200

    # An organizer's list, and the lists the worker wrote for the sign-ups so far.
    rider_lists(production, "2026r1").mkdir(exist_ok=True)
    organizer = rider_lists(production, "2026r1") / "organizer-own.csv"
    organizer.write_text("Last name,First name\nLoop,Before\n")
    lists_before = [p.name for p in rider_lists(production, "2026r1").glob("[!.]*")]

    before_plan = production.tree()
    plan = production.fab("promote_staging_to_production", "--plan", **r2).stdout
    assert (
        "replacing randopony2026r1" in plan
        and ". hold_writes" in plan
        and "precopy_databases" in plan
    )
    assert production.tree() == before_plan  # --plan changes nothing
    estimates, total = estimated(plan)
    assert list(estimates) == PROMOTION, plan

    client = LoopingClient(production, event, "during")
    client.start()
    wait_until(lambda: len(client.signed_up) >= 2, "sign-ups before the promotion")
    done = production.fab("promote_staging_to_production", "--yes", **r2)
    after = len(client.signed_up)
    wait_until(lambda: len(client.signed_up) >= after + 2, "sign-ups on the new release")
    client.stop.set()
    client.join(60)

    assert "Production is 2026r2" in done.stdout
    assert "Measured against the plan:" in done.stdout and "Took " in done.stdout
    # The rider lists went forward: every file, the organizer's as it was.
    lists_after = {p.name for p in rider_lists(production, "2026r2").iterdir()}
    assert set(lists_before) <= lists_after, (lists_before, lists_after)
    assert (rider_lists(production, "2026r2") / organizer.name).read_text() == organizer.read_text()
    assert re.search(
        r"rider lists: \d+ file\(s\), [\d.]+ MB transferred under the hold", done.stdout
    )
    # The new app waited in standby; the hold copied only the WAL (the cutover agent held reads
    # on production's databases since their precopy) and migrated the copy.
    assert "waiting in standby" in done.stdout and "out of standby" in done.stdout
    for name in ("RandoPony-production.sqlite", "celery.sqlite"):
        assert f"{name}: consistent copy (wal)" in done.stdout, done.stdout
    assert re.search(r"upgrade 0004 -> 0005", done.stdout), done.stdout
    assert client.failures == [], client.failures
    stored = riders_in(production.root / R2 / "RandoPony-production.sqlite")
    for email in before + client.signed_up:
        assert stored.count(email) == 1, email
    with sqlite3.connect(production.root / R2 / "RandoPony-production.sqlite") as db:
        columns = [row[1] for row in db.execute("PRAGMA table_info(brevet_riders)")]
        assert "emergency_phone" in columns
    assert Rider(production).get("/up").json()["release"] == "2026r2"
    # Production's session secret went forward (open forms stay valid); staging's did not.
    assert session_secret(production, "2026r2") == production_secret
    assert role_secret(production, "2026r2") == "production-only"
    assert not supervisor.answers(production.root / R1 / "supervisor.sock")  # old release stopped
    history = [
        json.loads(line)
        for line in (production.root / "deploy/releases.log").read_text().splitlines()
    ]
    promotion = history[-1]
    assert promotion["event"] == "promote" and promotion["previous"] == "2026r1"
    assert promotion["write_hold_seconds"] > 0 and "copy_databases" in promotion["steps"]
    # The plan told how long each step would take, and the run recorded how long each took
    # (how close the estimates come is a benchmark's business: bench/promote.py).
    measured = promotion["steps"]  # all but record_promotion, which writes them
    assert set(measured) == set(PROMOTION) - {"record_promotion"}
    assert all(estimates[name] > 0 for name in PROMOTION) and total > 0
    assert promotion["estimates"].keys() == estimates.keys() and promotion["sizes"]["databases"]


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
    # --plan says why, shows the next promotion's plan, and how the last one went.
    plan = production.fab("promote_staging_to_production", "--plan", **releases("2026r3", "2026r2"))
    assert plan.stdout.startswith("Not ready to promote: the host's staging release is None")
    assert "Promote randopony2026r3 to production" in plan.stdout
    assert ". copy_files" in plan.stdout and "Estimated: " in plan.stdout
    assert "Last run: promote of 2026r2" in plan.stdout
    assert re.search(r"\d+\. copy_databases\s+done\s+[\d.]+ s\s+[\d.]+ s", plan.stdout)


def test_deploy_staging_is_refused_while_a_promotion_holds_the_lock(production):
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


def refused_while_locked(production, holder: tuple[str, str], task: str, env: dict) -> None:
    """`task` refused while another operation (purpose, release) holds the lock and still runs:
    it names the holder and changes nothing."""
    purpose, release = holder
    with lock_held_while_running(production, purpose, release) as pid:
        before = production.tree()
        done = production.fab(task, "--yes", check=False, **env)
        assert done.returncode == 1, done.stdout
        assert (
            f"another release operation holds the host's lock: {purpose} of {release} by "
            f"{records.who()}" in done.stderr
        )
        assert f"(still running: process {pid}). Wait for it to finish." in done.stderr
        assert production.tree() == before


def test_a_rollback_is_refused_while_another_operation_runs(production):
    """A maintainer setting up the next staging release holds the lock: the rollback would
    otherwise go ahead (production 2026r2 has a previous release), and is refused, saying who
    holds the lock and that it still runs."""
    refused_while_locked(
        production, ("init_staging", "2026r3"), "rollback_production", releases("2026r3", "2026r2")
    )
    assert serving(production) == "2026r2" and roles(production)["previous"] == "2026r1"


def test_rollback_under_load_keeps_every_registration(production, load):
    rider = Rider(production)
    assert rider.sign_up(production.event, "on-r2@example.org").status_code == 302
    lists = rider_lists(production, "2026r2")
    (lists / "written-on-r2.csv").write_text("Last name\nOnR2\n")
    done = production.fab("rollback_production", "--yes", **releases("2026r3", "2026r2"))
    signed_up = settle(load)
    assert "Production is 2026r1 again" in done.stdout
    assert re.search(r"\d+\. copy_files_back\s+pending\s+[\d.]+ s", done.stdout)  # the plan
    assert "Measured against the plan:" in done.stdout
    assert (
        rider_lists(production, "2026r1") / "written-on-r2.csv"
    ).read_text() == "Last name\nOnR2\n"
    assert serving(production) == "2026r1"
    database = production.root / R1 / "RandoPony-production.sqlite"
    assert_stored_once(database, ["before0@example.org", "on-r2@example.org", *signed_up])
    with sqlite3.connect(database) as db:
        columns = [row[1] for row in db.execute("PRAGMA table_info(brevet_riders)")]
        assert "emergency_phone" not in columns  # migrated down with r2's scripts
        assert db.execute("SELECT version_num FROM alembic_version").fetchone()[0] == "0004"
    assert roles(production)["production"] == "2026r1" and "2026r2" in roles(production)["bad"]
    table = production.fab("releases", **releases("2026r3", "2026r1")).stdout
    assert re.search(r"2026r2\s*│\s*bad\s*│", table), table
    again = production.fab(
        "rollback_production", "--yes", check=False, **releases("2026r3", "2026r1")
    )
    assert again.returncode == 1 and "no previous production release" in again.stderr


def test_cleanup_keeps_the_release_the_fabfile_names_as_production(production):
    """Just after a rollback the fabfile still names the release rolled back from: marked bad,
    no role, no domain, nothing else keeps it. It stays until the fabfile names another."""
    assert roles(production)["previous"] is None and "2026r2" in roles(production)["bad"]
    before = production.tree()
    done = production.fab("cleanup_releases", "--keep=0", "--yes", **releases("2026r3", "2026r2"))
    assert "stays  2026r2: the fabfile's production_release" in done.stdout
    assert "Nothing to remove." in done.stdout
    assert production.tree() == before
    assert (production.root / R2 / "env/bin/python").exists()


def test_a_restarted_host_brings_production_and_staging_back(production):
    """After a promotion and a rollback, the machine restarts: the host brings back production
    (app and worker) and staging by itself, and each serves its own release."""
    r3 = releases("2026r3", "2026r1")
    production.fab("init_staging", **r3)
    assert (
        Rider(production).sign_up(production.event, "before-restart@example.org").status_code == 302
    )
    production.restart()
    assert serving(production) == "2026r1"
    assert serving(production, STAGING) == "2026r3"
    for release in (R1, "webapps/randopony2026r3"):
        states = {
            p.name: p.state
            for p in supervisor.programs(production.root / release / "supervisor.sock")
        }
        assert states == {"app_0": "RUNNING", "app_1": "RUNNING", "celery": "RUNNING"}, release
    assert (
        "production 2026r1 answers /up" in (production.root / "logs/host/releases.log").read_text()
    )
    assert (
        Rider(production).sign_up(production.event, "after-restart@example.org").status_code == 302
    )
    assert_stored_once(
        release_db(production, "2026r1"),
        ["before-restart@example.org", "after-restart@example.org"],
    )


def test_a_restart_keeps_a_release_waiting_in_standby(production):
    """A cutover cut off after the incoming app started ahead of its hold (in standby), then the
    machine restarts: the host brings that app back in standby, opening nothing, and it serves
    once its data is in place and it is let go, as a --resume does."""
    staging = production.root / "webapps/randopony2026r3"
    (staging / "standby").touch()
    production.restart()
    assert serving(production) == "2026r1"
    waiting = Rider(production, STAGING).get("/up")
    assert waiting.status_code == 503 and waiting.json()["status"] == "standby"
    assert (
        "staging 2026r3 waits in standby"
        in (production.root / "logs/host/releases.log").read_text()
    )
    activated = subprocess.run(
        [staging / "env/bin/randopony-release", staging, "activate"],
        capture_output=True,
        text=True,
    )
    assert activated.returncode == 0, activated.stdout + activated.stderr
    assert serving(production, STAGING) == "2026r3"
    assert not (staging / "standby").exists()


def test_the_fabfile_must_agree_with_the_host_about_production(production):
    """Staging 2026r3 is ready to promote, but the fabfile names 2026r2 as production, which
    the host rolled back from: refused for that, and nothing changed."""
    before = production.tree()
    done = production.fab(
        "promote_staging_to_production", "--yes", check=False, **releases("2026r3", "2026r2")
    )
    assert done.returncode == 1, done.stdout
    assert (
        "the host's production release is 2026r1, the fabfile expects 2026r2: "
        "set production_release = '2026r1'" in done.stderr
    )
    assert production.tree() == before
    assert serving(production) == "2026r1" and serving(production, STAGING) == "2026r3"


def test_a_promotion_is_refused_while_another_operation_runs(production):
    """The nightly refresh of staging holds the lock: the promotion, ready to go otherwise,
    is refused, saying who holds the lock and that it still runs."""
    refused_while_locked(
        production,
        ("sync_staging", "2026r3"),
        "promote_staging_to_production",
        releases("2026r3", "2026r1"),
    )
    assert serving(production) == "2026r1" and serving(production, STAGING) == "2026r3"


def test_a_promotion_still_running_is_neither_resumed_nor_undone(production):
    """A promotion under way in another terminal has saved its state and holds the lock:
    `--resume` and `fab rollback_production` take over the lock of a run that died, never of
    one that still runs. Once it has died, the rollback undoes it."""
    r3 = releases("2026r3", "2026r1")
    crash(production, "promote_staging_to_production", "--yes", at="start", **r3)
    holder = production.root / "deploy/lock/holder.json"
    dead = json.loads(holder.read_text())
    with running_process() as pid:
        holder.write_text(json.dumps({**dead, "pid": pid}))  # as if it were still running
        before = production.tree()
        for command in (
            ["promote_staging_to_production", "--yes", "--resume"],
            ["rollback_production", "--yes"],
        ):
            done = production.fab(*command, check=False, **r3)
            assert done.returncode == 1, done.stdout
            assert f"promote of 2026r3 by {records.who()}" in done.stderr
            assert f"(still running: process {pid}). Wait for it to finish." in done.stderr
            assert production.tree() == before
    undone = production.fab("rollback_production", "--yes", **r3)
    assert "is undone: production is 2026r1 as before" in undone.stdout
    assert serving(production) == "2026r1" and serving(production, STAGING) == "2026r3"
    assert not state_file(production).exists() and not holder.exists()


# Real kill -9 runs of the chain: the start, inside a step (precopy_files, below), under the hold
# and right after the switch. At the other boundaries the run is cut off in-process
# (tests/deploy/in_process.py), which leaves the host as a kill does but for the lock.
KILLED = {"start", "hold_writes", "switch_domain"}


def test_a_promotion_killed_at_every_step_is_finished_by_resume(production, load):
    r3 = releases("2026r3", "2026r1")
    production.fab("init_staging", **r3)
    old_lists = rider_lists(production, "2026r1")
    (old_lists / "changed.csv").write_text("before the precopy\n")
    (old_lists / "deleted.csv").write_text("gone by the hold\n")
    for number, boundary in enumerate(["start", *PROMOTION]):
        resume = ["--resume"] if number else []
        if boundary == "precopy_files":
            # Killed inside a step: `--plan` from another terminal shows where the run is.
            at = f"in:{boundary}"
            crash(production, "promote_staging_to_production", "--yes", *resume, at=at, **r3)
            plan = production.fab("promote_staging_to_production", "--plan", **r3).stdout
            for name in PROMOTION[: number - 1]:
                assert re.search(rf"\d+\. {name}\s+done\s+[\d.]+ s\s+[\d.]+ s", plan), plan
            assert re.search(rf"\d+\. {boundary}\s+running\s+[\d.]+ s\s", plan), plan
            for name in PROMOTION[number:]:
                assert re.search(rf"\d+\. {name}\s+pending\s+[\d.]+ s\s", plan), plan
            assert f"Done {number - 1} of {len(PROMOTION)} steps" in plan
        if boundary in KILLED:
            crash(production, "promote_staging_to_production", "--yes", *resume, at=boundary, **r3)
        else:  # the same task in this process, cut off at the boundary: no Python to start
            cut_off(production, "promote_staging_to_production", at=boundary, yes=True,
                    resume=bool(number), **r3)  # fmt: skip
        assert json.loads(state_file(production).read_text())["done"] == PROMOTION[:number]
        assert serving(production) in ("2026r1", "2026r3")
        if boundary == "copy_databases":  # once is enough: a plain promote is refused meanwhile
            again = production.fab("promote_staging_to_production", "--yes", check=False, **r3)
            assert again.returncode == 1 and "--resume" in again.stderr
        if boundary == "precopy_files":  # written after the precopy: the hold's diff carries it
            (old_lists / "changed.csv").write_text("changed after the precopy\n")
            (old_lists / "deleted.csv").unlink()
            (old_lists / "late.csv").write_text("written after the precopy\n")
    done = production.fab("promote_staging_to_production", "--resume", **r3)
    assert "Production is 2026r3" in done.stdout
    new_lists = rider_lists(production, "2026r3")
    assert (new_lists / "changed.csv").read_text() == "changed after the precopy\n"
    assert (new_lists / "late.csv").exists() and not (new_lists / "deleted.csv").exists()
    signed_up = settle(load, crashed=True)
    assert serving(production) == "2026r3"
    assert_stored_once(release_db(production, "2026r3"), ["on-r2@example.org", *signed_up])
    assert not state_file(production).exists()
    assert not (production.root / "deploy/lock").exists()
    assert (roles(production)["production"], roles(production)["previous"]) == ("2026r3", "2026r1")


def test_a_promotion_killed_before_the_domain_moves_is_undone_by_rollback(production, load):
    """Killed at each boundary before the switch, then `fab rollback_production`: production
    goes on as it was, and the release is staging again, with its own data, ready to promote."""
    r4 = releases("2026r4", "2026r3")
    production.fab("init_staging", **r4)
    staging_lists = rider_lists(production, "2026r4")
    staging_lists.mkdir(exist_ok=True)
    (staging_lists / "staging-own.csv").write_text("staging's own list\n")
    for boundary in UNDO_AT:
        crash(production, "promote_staging_to_production", "--yes", at=boundary, **r4)
        assert serving(production) == "2026r3"
        undone = production.fab("rollback_production", "--yes", **r4)
        assert "is undone: production is 2026r3 as before" in undone.stdout, boundary
        assert serving(production) == "2026r3"
        assert serving(production, STAGING) == "2026r4", boundary
        assert roles(production)["staging"] == "2026r4"
        assert not release_db(production, "2026r4").exists()  # production's data not left there
        # Staging's rider lists are back, and production's copies are gone.
        assert (staging_lists / "staging-own.csv").read_text() == "staging's own list\n", boundary
        assert not (staging_lists / "late.csv").exists(), boundary
        assert not state_file(production).exists()
    signed_up = settle(load, crashed=True)
    assert_stored_once(release_db(production, "2026r3"), ["on-r2@example.org", *signed_up])
    assert "2026r4" not in roles(production).get("bad", [])
    # Staging was put back as it was: its own database, not production's.
    staging_db = production.root / "webapps/randopony2026r4/RandoPony-staging.sqlite"
    assert "on-r2@example.org" not in riders_in(staging_db)


@pytest.mark.parametrize("boundary", ROLLBACK_AFTER)
def test_a_promotion_killed_after_the_domain_moved_is_rolled_back(production, load, boundary):
    """The new release has taken writes: the rollback copies them back to the previous release.
    After the first boundary the rollback itself is killed at each of its boundaries and
    resumed."""
    release = f"2026r{5 + AFTER_SWITCH.index(boundary)}"
    env = releases(release, "2026r3")
    production.fab("init_staging", **env)  # takes the staging domain from the release before
    crash(production, "promote_staging_to_production", "--yes", at=boundary, **env)
    assert serving(production) == release
    rider = Rider(production)
    assert rider.sign_up(production.event, f"on-{release}@example.org").status_code == 302
    (rider_lists(production, release) / f"on-{release}.csv").write_text(f"on {release}\n")
    chain = FULL_ROLLBACK if boundary == AFTER_SWITCH[0] else []
    for number, step in enumerate(["start", *chain]):
        resume = ["--resume"] if number else []
        crash(production, "rollback_production", "--yes", *resume, at=f"rollback:{step}", **env)
        assert serving(production) in ("2026r3", release)
    rolled = production.fab("rollback_production", "--yes", "--resume", **env)
    assert "Production is 2026r3 again" in rolled.stdout
    signed_up = settle(load, crashed=bool(chain))
    assert serving(production) == "2026r3"
    emails = ["on-r2@example.org", f"on-{release}@example.org", *signed_up]
    assert_stored_once(release_db(production, "2026r3"), emails)
    assert roles(production)["production"] == "2026r3" and release in roles(production)["bad"]
    assert not state_file(production).exists()
    assert (
        rider_lists(production, "2026r3") / f"on-{release}.csv"
    ).read_text() == f"on {release}\n"


FAILING_MIGRATION = migration(
    "one brevet per rider (fails on production data)",
    "0006",
    "0005",
    ['op.create_index("ix_test_one_brevet_per_rider", "brevet_riders", ["email"], unique=True)'],
    ['op.drop_index("ix_test_one_brevet_per_rider", "brevet_riders")'],
)


# Five fab runs, three of them promotions: about 80 s alone, over 300 s (the suite's hang guard)
# once with both cores kept busy beside the suite.
@pytest.mark.timeout(900)
def test_failures_before_the_switch_leave_production_as_it_was(production, load):
    """A migration that fails on production's data, then a release whose app cannot start: each
    stops before the domain moves, production goes on (writes too), and the release is
    back on staging to be mended; mended, it is promoted."""
    rider = Rider(production)
    other = re.findall(r'href="http://[^"/]+(/brevets/SI/[^"]+)"', rider.get("/brevets/").text)
    assert other, "the demo's SI600 (no question to answer) is on /brevets/"
    for event in (production.event, other[0]):
        assert rider.sign_up(event, "twice@example.org").status_code == 302
    r9 = releases("2026r9", "2026r3")
    migration = production.checkout / "alembic/versions/0006_test_one_brevet_per_rider.py"
    migration.write_text(FAILING_MIGRATION)
    production.fab("init_staging", **r9)  # staging's demo data passes the migration

    failed = production.fab("promote_staging_to_production", "--yes", check=False, **r9)
    assert failed.returncode == 1
    assert "migrate_database failed" in failed.stderr and "UNIQUE" in failed.stderr
    assert "production is 2026r3, as before" in failed.stderr
    assert serving(production) == "2026r3" and serving(production, STAGING) == "2026r9"
    assert rider.sign_up(production.event, "after-migration@example.org").status_code == 302

    # Mended: staging already ran the unique index; production gets a plain one.
    migration.write_text(FAILING_MIGRATION.replace("unique=True", "unique=False"))
    ini = production.checkout / "production.ini"
    good = ini.read_text()
    ini.write_text(good.replace("[app:main]", "[app:main]\npyramid.includes = no_such_addon", 1))
    production.fab("deploy_staging", **r9)
    failed = production.fab("promote_staging_to_production", "--yes", check=False, **r9)
    assert failed.returncode == 1
    # The app starts ahead of the hold (in standby): one that cannot start fails before any
    # write is held.
    assert "start_standby failed" in failed.stderr and "no_such_addon" in failed.stderr
    assert "→ hold_writes" not in failed.stdout
    assert "production is 2026r3, as before" in failed.stderr
    assert serving(production) == "2026r3" and serving(production, STAGING) == "2026r9"
    assert rider.sign_up(production.event, "after-health@example.org").status_code == 302

    ini.write_text(good)
    production.fab("deploy_staging", **r9)
    production.fab("promote_staging_to_production", "--yes", **r9)
    signed_up = settle(load)
    assert serving(production) == "2026r9"
    emails = ["after-migration@example.org", "after-health@example.org", *signed_up]
    assert_stored_once(release_db(production, "2026r9"), emails)
    assert riders_in(release_db(production, "2026r9")).count("twice@example.org") == 2


# Cleaning up after all of the above: production 2026r9, rollback target 2026r3; 2026r2 and the
# releases rolled back after the switch marked bad; 2026r4 a staging release replaced; 2026r1.
AFTER_ALL = releases("2026r10", "2026r9")


def webapps(host):
    return sorted(p.name.removeprefix("randopony") for p in (host.root / "webapps").iterdir())


def history(host):
    text = (host.root / "deploy/releases.log").read_text()
    return [json.loads(line) for line in text.splitlines()]


def test_cleanup_refuses_bad_input_a_held_lock_and_an_unfinished_promotion(production):
    before, events = production.tree(), len(history(production))
    done = production.fab("cleanup_releases", "--keep=-1", "--yes", check=False, **AFTER_ALL)
    assert done.returncode == 1 and "error: --keep must be a whole number" in done.stderr
    done = production.fab("cleanup_releases", "--keep=0", check=False, **AFTER_ALL)
    assert done.returncode == 1 and "error: not confirmed; nothing changed" in done.stderr
    assert "stays  2026r9: production" in done.stdout
    assert "stays  2026r3: rollback target" in done.stdout
    assert "goes   2026r1" in done.stdout and "goes   2026r5" in done.stdout
    assert production.tree() == before and len(history(production)) == events

    state_file(production).write_text(
        json.dumps({"incoming": "2026r10", "outgoing": "2026r9", "done": []})
    )
    try:
        done = production.fab("cleanup_releases", "--keep=0", "--yes", check=False, **AFTER_ALL)
        assert done.returncode == 1 and "--resume" in done.stderr
    finally:
        state_file(production).unlink()
    lock = production.root / "deploy/lock"
    lock.mkdir()
    (lock / "holder.json").write_text(
        json.dumps({"purpose": "promote", "release": "2026r10", "by": "ada@pony", "since": "now"})
    )
    try:
        done = production.fab("cleanup_releases", "--keep=0", "--yes", check=False, **AFTER_ALL)
        assert done.returncode == 1 and "ada@pony" in done.stderr
    finally:
        (lock / "holder.json").unlink()
        lock.rmdir()
    assert production.tree() == before and len(history(production)) == events


def test_cleanup_keeps_every_release_the_production_domain_uses(production):
    """Whatever the roles and the fabfile say, a release the router uses for the production
    domain stays: an old release's app mounted under production's website, and production's
    own release on a host whose records do not name it (set up by hand, or roles.json lost)."""
    api = panel(production)
    site = api.website("randopony2026r9")
    mounts = [list(mount) for mount in site.website_apps]
    api.update_website(
        site.name, site.ip, False, site.subdomains, [*mounts, ["randopony2026r1", "/archive"]]
    )
    try:
        done = production.fab("cleanup_releases", "--keep=0", check=False, **AFTER_ALL)
    finally:
        api.update_website(site.name, site.ip, False, site.subdomains, mounts)
    assert done.returncode == 1 and "not confirmed; nothing changed" in done.stderr
    assert "stays  2026r1: website randopony2026r9 serves randopony.localhost" in done.stdout

    roles_file = production.root / "deploy/roles.json"
    kept = roles_file.read_text()
    roles_file.write_text(json.dumps({**json.loads(kept), "production": None}))
    try:
        done = production.fab(
            "cleanup_releases", "--keep=0", check=False, **releases("2026r10", "")
        )
    finally:
        roles_file.write_text(kept)
    assert done.returncode == 1 and "not confirmed; nothing changed" in done.stderr
    assert "stays  2026r9: website randopony2026r9 serves randopony.localhost" in done.stdout


def test_cleanup_keeps_production_the_rollback_target_and_the_newest(production):
    from deploy.remote.panel_client import HostingAPI
    from tests.deploy.conftest import HOSTING_PASSWORD

    # Installed in the order of their numbers: the newest other release is the last one.
    *gone, newest = [r for r in webapps(production) if r not in ("2026r3", "2026r9")]
    assert "2026r1" in gone and "2026r2" in gone  # the first production, a bad release
    done = production.fab("cleanup_releases", "--keep=1", "--yes", **AFTER_ALL)
    assert f"Removed {len(gone)} release(s) ({', '.join(gone)})" in done.stdout
    assert webapps(production) == ["2026r3", newest, "2026r9"]
    api = HostingAPI(f"http://127.0.0.1:{production.panel_port}/")
    api.login("randopony", HOSTING_PASSWORD)
    names = {a.name for a in api.list_apps()} | {w.name for w in api.list_websites()}
    assert not {f"randopony{r}" for r in gone} & names
    assert {"randopony2026r3", "randopony2026r9"} <= names
    assert serving(production) == "2026r9"
    event = history(production)[-1]
    assert event["event"] == "cleanup_releases" and event["removed"] == gone
    assert event["freed_bytes"] > 1_000_000  # virtualenvs went

    done = production.fab("cleanup_releases", "--keep=0", "--yes", **AFTER_ALL)
    assert f"Removed 1 release(s) ({newest})" in done.stdout
    assert "Nothing to remove." in production.fab("cleanup_releases", **AFTER_ALL).stdout
    assert webapps(production) == ["2026r3", "2026r9"]
    assert (production.root / "webapps/randopony2026r3/RandoPony-production.sqlite").exists()
    # The rollback target is whole: production can still go back to it.
    rolled = production.fab("rollback_production", "--yes", **AFTER_ALL)
    assert "Production is 2026r3 again" in rolled.stdout and serving(production) == "2026r3"


def test_a_release_serving_production_is_never_removed(production):
    """The last check, at the removal itself (the panel may have changed since the plan was
    made): removing a release whose website serves the production domain is refused, and its
    website, app and files stay."""
    target = Target(
        staging_release="2026r10",
        production_release="2026r3",
        host_root=str(production.root),
        hosting_api=f"http://127.0.0.1:{production.panel_port}/",
    )
    with target.connected() as host, hosting_session(target, host, HOSTING_PASSWORD) as api:
        with pytest.raises(StepFailed, match="randopony2026r3 serves randopony.localhost"):
            run_steps(cleanup.Removal(target, host, api, "2026r3"), cleanup.REMOVAL_STEPS)
        assert api.app("randopony2026r3") is not None
        assert "randopony.localhost" in api.website("randopony2026r3").subdomains
    assert release_db(production, "2026r3").exists()
    assert (production.root / "webapps/randopony2026r3/env/bin/python").exists()


def test_the_refused_removal_left_production_serving(production):
    assert serving(production) == "2026r3"
