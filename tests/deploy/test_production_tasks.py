"""The seed guide's tasks for production's processes, on a host whose production release serves
riders: `fab ps`, `restart_app`, `stop_app` and `start_app --release=production`, and the tails
of production's app, celery and supervisord logs."""

import re

import pytest

from deploy.host import supervisor
from tests.deploy.riders import Rider, wait_until

R1 = "webapps/randopony2026r1"
# After the first promotion, as the README says to set the fabfile: production 2026r1, and the
# next release to come on staging.
AFTER = dict(RANDOPONY_STAGING_RELEASE="2026r2", RANDOPONY_PRODUCTION_RELEASE="2026r1")


def programs(host):
    return {p.name: p for p in supervisor.programs(host.root / R1 / "supervisor.sock")}


def production_row(host):
    """Production's row of `fab ps`, cells stripped."""
    table = host.fab("ps", **AFTER).stdout
    rows = [line for line in table.splitlines() if re.search(r"│\s*2026r1\s*│", line)]
    assert len(rows) == 1, table
    return [cell.strip() for cell in rows[0].split("│")[1:-1]]


def last_lines(host, name, count):
    return (host.root / R1 / name).read_text(errors="replace").splitlines()[-count:]


@pytest.fixture(scope="module")
def production(local_host, mailbox):
    """Production 2026r1 with the demo events and a rider who signed up (and was mailed)."""
    local_host.fab("init_staging")
    local_host.fab("promote_staging_to_production", "--yes", "--demo")
    rider = Rider(local_host)
    assert rider.sign_up(rider.event(), "before.restart@example.org").status_code == 302
    mailbox.wait_for(2, timeout=120)
    return local_host


def test_ps_lists_production_s_processes(production):
    row = production_row(production)
    assert row[:2] == ["2026r1", "production"]
    assert row[3] == "randopony.localhost"
    assert row[4] == "app 2/2 running, celery running"


def test_restart_app_starts_new_app_processes_and_production_answers(production):
    before = programs(production)
    assert {before["app_0"].state, before["app_1"].state} == {"RUNNING"}
    done = production.fab("restart_app", "--release=production", **AFTER)
    assert "app stopped; its process is gone" in done.stdout
    assert re.search(r"app started; it answers at http://127\.0\.0\.1:\d+/up \(ok\)", done.stdout)

    after = programs(production)
    for name in ("app_0", "app_1"):
        assert after[name].state == "RUNNING"
        assert after[name].pid != before[name].pid, name
        assert not supervisor.pid_alive(before[name].pid), name
    assert after["celery"].pid == before["celery"].pid  # the worker was left alone

    rider = Rider(production)
    assert rider.get("/up").json()["release"] == "2026r1"
    page = rider.get(rider.event())
    assert page.status_code == 200 and "before.restart" in page.text
    assert rider.sign_up(rider.event(), "after.restart@example.org").status_code == 302
    assert production_row(production)[4] == "app 2/2 running, celery running"

    # The supervisord log says so too: a maintainer sees the new processes start.
    log = production.fab("tail_production_supervisor_log", "--lines=30", **AFTER).stdout
    for name in ("app_0", "app_1"):
        assert f"spawned: '{name}' with pid {after[name].pid}" in log, log


def test_stop_app_then_start_app(production):
    done = production.fab("stop_app", "--release=production", **AFTER)
    assert "app stopped; its process is gone" in done.stdout
    assert production_row(production)[4] == "app 0/2 running (stopped), celery running"
    done = production.fab("start_app", "--release=production", **AFTER)
    assert "app started; it answers at" in done.stdout
    assert production_row(production)[4] == "app 2/2 running, celery running"
    assert Rider(production).get("/up").json()["release"] == "2026r1"


@pytest.mark.parametrize(
    "task, log",
    [
        (["tail_app_log", "--release=production"], "pyramid.log"),
        (["tail_production_celery_log"], "celery.log"),
        (["tail_production_supervisor_log"], "supervisord.log"),
    ],
)
def test_the_tails_show_the_last_lines_of_production_s_logs(production, task, log):
    done = production.fab(*task, "--lines=5", **AFTER)
    assert done.stdout.splitlines() == last_lines(production, log, 5)
    assert len(done.stdout.splitlines()) == 5


def test_the_celery_log_tail_shows_the_mail_production_sent(production, mailbox):
    rider = Rider(production)
    assert rider.sign_up(rider.event(), "tail.celery@example.org").status_code == 302
    wait_until(
        lambda: any("tail.celery@example.org" in rcpt for rcpt, _, _ in mailbox.messages),
        "production's worker to send the sign-up's mail",
    )
    tail = production.fab("tail_production_celery_log", "--lines=20", **AFTER).stdout
    assert re.search(r"sent outbox email \d+ to .*tail\.celery@example\.org", tail), tail
