"""A developer's day on the local host: init_staging, sign-ups on staging, deploy_staging of a
changed template, stopping and starting the app, and the releases table. Real processes: the
host's panel and router, the release's supervisord, waitress and celery, an SMTP server."""

import json
import os
import re
import signal
import stat
from pathlib import Path

import pytest
import requests

from deploy.host import supervisor
from tests.deploy.migrations import migration
from tests.deploy.riders import LoopingClient, Rider, wait_until

STAGING = "staging.randopony.localhost"
RELEASE_DIR = "webapps/randopony2026r1"


def get(host, path="/", **kw):
    return requests.get(host.url(path), headers={"Host": STAGING}, timeout=30, **kw)


@pytest.fixture(scope="module")
def staging(local_host):
    done = local_host.fab("init_staging")
    assert f"Staging is up: http://{STAGING}:" in done.stdout
    return local_host


def test_init_staging_serves_the_site_through_the_router(staging):
    home = get(staging)
    assert home.status_code == 200
    assert "Welcome to the RandoPony" in home.text
    assert "LM200" in home.text  # the demo events
    up = get(staging, "/up").json()
    assert (up["status"], up["release"]) == ("ok", "2026r1")


def test_init_staging_records_what_it_did(staging):
    roles = json.loads((staging.root / "deploy/roles.json").read_text())
    assert roles["staging"] == "2026r1"
    history = [
        json.loads(line) for line in (staging.root / "deploy/releases.log").read_text().splitlines()
    ]
    assert history[-1]["event"] == "init_staging" and history[-1]["release"] == "2026r1"
    journal = [
        json.loads(line) for line in (staging.root / "deploy/journal.log").read_text().splitlines()
    ]
    steps = [
        (entry["step"], entry["state"]) for entry in journal if entry["task"] == "init_staging"
    ]
    for name in (
        "init_staging_app",
        "rsync_code",
        "install_app",
        "init_staging_db",
        "restart_staging",
    ):
        assert steps.index((name, "started")) < steps.index((name, "done"))


def test_a_sign_up_on_staging_is_mailed_by_the_release_worker(staging, mailbox):
    browser = requests.Session()
    home = browser.get(staging.url("/brevets/"), headers={"Host": STAGING}, timeout=30).text
    event = re.search(r'href="http://[^"/]+(/brevets/LM/200/[^"]+)"', home).group(1)
    form = browser.get(staging.url(event + "/entry"), headers={"Host": STAGING}, timeout=30).text
    token = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)
    before = len(mailbox.messages)
    browser_host = f"{STAGING}:{staging.router_port}"  # as a browser sends it
    answer = browser.post(
        staging.url(event + "/entry"),
        headers={"Host": browser_host},
        data={
            "csrf_token": token,
            "email": "stager@example.org",
            "first_name": "Stage",
            "last_name": "Rider",
            "bike_type": "single",
        },
        timeout=30,
        allow_redirects=False,  # *.localhost resolves in browsers, not here: follow by hand
    )
    assert answer.status_code == 302
    assert answer.headers["Location"] == f"http://{browser_host}{event}"
    page = browser.get(staging.url(event), headers={"Host": browser_host}, timeout=30)
    assert "Thank you, Stage" in page.text
    messages = mailbox.wait_for(before + 2, timeout=30)
    recipients = [to for to, _, _ in messages[before:]]
    assert ["stager@example.org"] in recipients
    assert "celery" in (staging.root / RELEASE_DIR / "celery.log").read_text()


def test_credentials_are_owner_read_only_and_never_logged(staging):
    credentials = staging.root / RELEASE_DIR / "private_credentials"
    assert stat.S_IMODE(credentials.stat().st_mode) == 0o400
    secret = re.search(r"session_secret = (\S+)", credentials.read_text()).group(1)
    for path in staging.root.rglob("*"):
        if path.is_file() and path != credentials and path.suffix not in (".sqlite", ".sock"):
            assert secret not in path.read_text(errors="replace"), (
                f"the session secret leaked into {path}"
            )


def test_riders_data_and_secrets_are_the_owners_alone(staging):
    """Databases, rider lists, logs and the supervisord.conf (release.env's values are in it)
    are readable by their owner only; the app and the worker inherit nothing of the
    maintainer's environment (the panel and wrangler passwords were in it)."""
    release = staging.root / RELEASE_DIR
    private = [
        release / "supervisord.conf",
        release / "supervisord.conf.started",
        *release.glob("*.sqlite*"),
        *release.glob("*.log"),
        *(release / "rider_lists").glob("*"),
    ]
    assert any(path.suffix == ".sqlite" for path in private) and len(private) > 5, private
    shared = [p for p in private if stat.S_IMODE(p.stat().st_mode) & 0o077]
    assert shared == [], [(str(p), oct(p.stat().st_mode)) for p in shared]

    assert staging.env["RANDOPONY_HOSTING_PASSWORD"]  # the maintainer's fab had it
    programs = supervisor.programs(release / "supervisor.sock")
    pids = [program.pid for program in programs if program.pid]
    assert len(pids) >= 2, programs
    for pid in pids:
        names = {
            entry.split(b"=", 1)[0].decode()
            for entry in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            if entry
        }
        assert not names & {"RANDOPONY_HOSTING_PASSWORD", "RANDOPONY_WRANGLER_PASSWORD"}, names
        assert "RANDOPONY_SITE_URL" in names  # its own settings still reach it


def test_deploy_staging_of_a_changed_template_shows_the_change(staging):
    template = staging.checkout / "app/templates/home.jinja2"
    template.write_text(
        template.read_text().replace("Welcome to the RandoPony", "Welcome to the staging pony")
    )
    done = staging.fab("deploy_staging")
    assert "dependencies unchanged" in done.stdout
    assert "Welcome to the staging pony" in get(staging).text
    src = staging.root / RELEASE_DIR / "src"
    assert (
        not (src / "tests").exists()
        and not (src / ".venv").exists()
        and not (src / "development.ini").exists()
    )


NEW_MIGRATION = migration(
    "an index on riders' last names",
    "0005",
    "0004",
    ['op.create_index("ix_test_last_name", "brevet_riders", ["last_name"])'],
    ['op.drop_index("ix_test_last_name", "brevet_riders")'],
)


def test_deploy_staging_runs_new_migrations_on_staging(staging):
    (staging.checkout / "alembic/versions/0005_test_last_name.py").write_text(NEW_MIGRATION)
    done = staging.fab("deploy_staging")
    assert "Running upgrade 0004 -> 0005" in done.stdout
    up = requests.get(staging.url("/up"), headers={"Host": STAGING}, timeout=30).json()
    assert (up["status"], up["revision"]) == ("ok", "0005")


def test_fab_with_no_task_deploys_staging(staging):
    done = staging.fab()
    assert "rsync_code" in done.stdout and "Staging is up" in done.stdout


def test_stop_app_answers_502_and_start_app_brings_it_back(staging):
    assert "process is gone" in staging.fab("stop_app", "--release=staging").stdout
    down = get(staging)
    assert down.status_code == 502
    assert "randopony2026r1" in down.text or STAGING in down.text
    assert "answers at" in staging.fab("start_app", "--release=staging").stdout
    assert get(staging).status_code == 200


def test_releases_table_reads_the_host(staging):
    table = staging.fab("releases").stdout
    assert "2026r1" in table and "staging" in table and "running" in table


def test_tail_tasks_show_the_release_logs(staging):
    assert "celery@" in staging.fab("tail_staging_celery_log", "--lines", "200").stdout
    assert staging.fab("tail_app_log", "--release=staging").returncode == 0


def test_staging_supervisor_stop_and_start(staging):
    assert "gone" in staging.fab("stop_staging_supervisor").stdout
    assert get(staging).status_code == 502
    assert "started" in staging.fab("start_staging_supervisor").stdout
    assert staging.fab("start_app").returncode == 0  # waits for /up
    assert get(staging).status_code == 200


def app_processes(sock):
    return {p.name: p for p in supervisor.programs(sock) if p.group == "app"}


def test_a_killed_app_process_fails_no_request(staging):
    """Two app processes share the release's socket: SIGKILL one, then the other once
    supervisord has restarted the first, under a looping reader; nobody sees an error."""
    sock = staging.root / RELEASE_DIR / "supervisor.sock"
    before = app_processes(sock)
    assert sorted(before) == ["app_0", "app_1"]
    assert all(p.state == "RUNNING" for p in before.values())
    reader = LoopingClient(
        staging, Rider(staging, STAGING).event(), "k", reads_only=True, domain=STAGING
    )

    def served_more(count=5):
        served = reader.requests
        wait_until(lambda: reader.requests >= served + count, "the reader to be served")

    def restarted(name, old_pid):
        now = app_processes(sock)[name]
        return now.pid not in (None, old_pid) and now.state == "RUNNING"

    reader.start()
    try:
        for name in ("app_0", "app_1"):
            served_more()
            old_pid = app_processes(sock)[name].pid
            os.kill(old_pid, signal.SIGKILL)
            wait_until(lambda: restarted(name, old_pid), f"supervisord to restart {name}")  # noqa: B023
        served_more()
    finally:
        reader.stop.set()
        reader.join(timeout=60)
    assert reader.failures == []
    table = staging.fab("releases").stdout
    assert re.search(r"│ 2, last [-0-9]+ [:0-9]+ app_1 SIGKILL", table), table


def test_every_release_process_has_faulthandler_on_and_knows_its_address(staging):
    sock = staging.root / RELEASE_DIR / "supervisor.sock"
    site_url = f"RANDOPONY_SITE_URL=http://{STAGING}:{staging.router_port}".encode()
    for program in supervisor.programs(sock):
        if program.pid:
            environ = Path(f"/proc/{program.pid}/environ").read_bytes().split(b"\0")
            assert b"PYTHONFAULTHANDLER=1" in environ, program.name
            assert site_url in environ, program.name
