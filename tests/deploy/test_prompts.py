"""Every task that asks before it changes anything, answered "n" at its question, as a maintainer
at a terminal answers it: the task says it did nothing, and nothing changed on the host (its
files and records, the panel's apps and websites, the crontab, what each domain serves).

The tasks that ask: promote_staging_to_production (a first promotion and a later one),
upgrade_attempt --minutes and --cancel, rollback_production, unlock and cleanup_releases. In order,
on one host, each question is put in the state where it is asked for real."""

import json
import subprocess

import pytest

from deploy.remote.panel_client import HostingAPI
from tests.conftest import ROOT
from tests.deploy.conftest import BIN, HOSTING_PASSWORD
from tests.deploy.riders import PRODUCTION, STAGING, Rider

FIRST = dict(RANDOPONY_STAGING_RELEASE="2026r1", RANDOPONY_PRODUCTION_RELEASE="")
SECOND = dict(RANDOPONY_STAGING_RELEASE="2026r2", RANDOPONY_PRODUCTION_RELEASE="2026r1")
# After 2026r2's upgrade attempt: production 2026r2, rollback target 2026r1.
ATTEMPT = dict(RANDOPONY_STAGING_RELEASE="2026r2", RANDOPONY_PRODUCTION_RELEASE="2026r2")
LATER = dict(RANDOPONY_STAGING_RELEASE="2026r4", RANDOPONY_PRODUCTION_RELEASE="2026r2")


def crontab(host) -> list[str]:
    """This host's lines of the crontab (the machine's other hosts, tests, may change theirs)."""
    listed = subprocess.run(["crontab", "-l"], capture_output=True, text=True).stdout
    return [line for line in listed.splitlines() if str(host.root) in line]


def serves(host, domain):
    answer = Rider(host, domain).get("/up")
    return answer.json().get("release") if answer.status_code == 200 else answer.status_code


def state(host) -> dict:
    """What a maintainer could find changed: the host's files, databases and panel (the
    fixture's tree), its records (the journal and history logs, checked here once more by
    content), the panel's apps and websites, the crontab, and the release each domain serves."""
    api = HostingAPI(f"http://127.0.0.1:{host.panel_port}/")
    api.login("randopony", HOSTING_PASSWORD)
    records = {
        name: (host.root / "deploy" / name).read_text()
        for name in ("journal.log", "releases.log")
        if (host.root / "deploy" / name).exists()
    }
    return {
        "files": host.tree(),
        "records": records,
        "apps": sorted((app.name, app.port) for app in api.list_apps()),
        "websites": sorted((site.name, site.subdomains) for site in api.list_websites()),
        "crontab": crontab(host),
        "production": serves(host, PRODUCTION),
        "staging": serves(host, STAGING),
    }


def answered_no(host, *args, question, **env) -> subprocess.CompletedProcess:
    """`fab` at a terminal: the task's question is answered "n"; it must refuse, say so, and
    leave everything as it was."""
    before = state(host)
    done = subprocess.run(
        [str(BIN / "fab"), *args],
        cwd=ROOT,
        env={**host.env, **env},
        input="n\n",
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert f"{question} [y/N] " in done.stdout, done.stdout + done.stderr
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    after = state(host)
    for key in before:
        assert after[key] == before[key], key
    return done


@pytest.fixture(scope="module")
def host(local_host):
    """Staging 2026r1 on a new host; the host's crontab lines are taken out at the end."""
    try:
        local_host.fab("init_staging", **FIRST)
        yield local_host
    finally:
        subprocess.run(
            f"crontab -l 2>/dev/null | grep -v ' {local_host.root}$' | crontab -",
            shell=True,
            check=False,
        )


def test_the_first_promotion_answered_no(host):
    done = answered_no(host, "promote_staging_to_production", question="Promote now?", **FIRST)
    assert "Promote randopony2026r1 to production" in done.stdout  # the plan, then the question
    assert "error: not confirmed; nothing changed" in done.stderr
    assert serves(host, PRODUCTION) == 404 and serves(host, STAGING) == "2026r1"


def test_a_promotion_answered_no(host):
    host.fab("promote_staging_to_production", "--yes", "--demo", **FIRST)
    host.fab("init_staging", **SECOND)
    done = answered_no(host, "promote_staging_to_production", question="Promote now?", **SECOND)
    assert "error: not confirmed; nothing changed" in done.stderr
    assert serves(host, PRODUCTION) == "2026r1" and serves(host, STAGING) == "2026r2"


def test_an_upgrade_attempt_answered_no(host):
    done = answered_no(
        host,
        "upgrade_attempt",
        "--minutes=30",
        question="Refresh staging from production, then promote 2026r2 to production for a "
        "30-minute upgrade attempt?",
        **SECOND,
    )
    assert "error: not confirmed; nothing changed" in done.stderr
    assert not (host.root / "deploy/upgrade_attempt.json").exists()


def test_a_rollback_answered_no(host):
    host.fab("upgrade_attempt", "--minutes=30", "--yes", **SECOND)
    assert serves(host, PRODUCTION) == "2026r2"
    done = answered_no(host, "rollback_production", question="Roll back now?", **ATTEMPT)
    assert "error: not confirmed; nothing changed" in done.stderr
    assert serves(host, PRODUCTION) == "2026r2"


def test_cancelling_an_upgrade_attempt_answered_no(host):
    done = answered_no(host, "upgrade_attempt", "--cancel", question="Roll back now?", **ATTEMPT)
    assert "error: not confirmed; nothing changed" in done.stderr
    attempt = json.loads((host.root / "deploy/upgrade_attempt.json").read_text())
    assert (attempt["release"], attempt["state"]) == ("2026r2", "open")
    assert "Upgrade attempt of 2026r2 open until" in host.fab("releases", **ATTEMPT).stdout


def test_clearing_a_lock_answered_no(host):
    lock = host.root / "deploy/lock"
    lock.mkdir()
    holder = {"purpose": "promote", "release": "2026r9", "by": "ada@pony", "since": "now"}
    (lock / "holder.json").write_text(json.dumps(holder))
    try:
        done = answered_no(host, "unlock", question="Clear the lock?", **ATTEMPT)
        assert "Locked by ada@pony for promote of 2026r9" in done.stdout
        assert "error: not confirmed; the lock stays" in done.stderr
        assert json.loads((lock / "holder.json").read_text()) == holder
    finally:
        (lock / "holder.json").unlink()
        lock.rmdir()


def test_a_cleanup_answered_no(host):
    # Two releases whose deployment went no further than their app and website on the panel:
    # 2026r3 is left behind when 2026r4 takes the staging domain over.
    host.fab("init_staging_app", **dict(ATTEMPT, RANDOPONY_STAGING_RELEASE="2026r3"))
    host.fab("init_staging_app", **LATER)
    done = answered_no(host, "cleanup_releases", "--keep=0", question="Remove them?", **LATER)
    assert "stays  2026r2: production" in done.stdout
    assert "stays  2026r1: rollback target" in done.stdout
    assert "goes   2026r3" in done.stdout
    assert "error: not confirmed; nothing changed" in done.stderr
    assert (host.root / "webapps/randopony2026r3/release.json").exists()
