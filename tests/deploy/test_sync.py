"""Refreshing staging from production on a real local host, and upgrade attempts.

In order, on one host: production 2026r1 with riders who have real-looking addresses (one with
mail still queued); staging 2026r2 with data of its own; `fab sync_staging` under a client
that keeps reading and signing up on production; then the nightly schedule, run as cron runs it;
then an upgrade attempt cancelled and one accepted, with sign-ups during each window."""

import base64
import json
import re
import sqlite3
import stat
import subprocess
from datetime import datetime
from pathlib import Path

import openpyxl
import pytest

from app.sanitize import sink_address
from tests.deploy.riders import PRODUCTION, STAGING, LoopingClient, Rider, riders_in, wait_until

R1, R2, R3 = "webapps/randopony2026r1", "webapps/randopony2026r2", "webapps/randopony2026r3"
SINK = "sink.invalid"
ADDRESS = re.compile(r"[\w.%+'-]+@([\w-]+(?:\.[\w-]+)+)")
# Real-looking production addresses: none may ever be seen on staging.
REAL = ["ada.lovelace@gmail.com", "b.rider@shaw.ca", "organizer.pat@telus.net"]


def releases(staging, production):
    return dict(RANDOPONY_STAGING_RELEASE=staging, RANDOPONY_PRODUCTION_RELEASE=production)


def runtime(host, release_dir, *command):
    directory = host.root / release_dir
    return subprocess.run(
        [
            str(directory / "env/bin/python"),
            "-m",
            "deploy.host.release_runtime",
            str(directory),
            *command,
        ],
        cwd=directory,
        capture_output=True,
        text=True,
        check=True,
    )


def text_values(path: Path):
    """Every text value of every table of a SQLite file, with kombu's base64 message bodies
    decoded, so an address inside a queued task is seen too."""
    with sqlite3.connect(path) as db:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            for row in db.execute(f'SELECT * FROM "{table}"'):
                for value in row:
                    if isinstance(value, bytes):
                        value = value.decode("utf-8", "replace")
                    if not isinstance(value, str):
                        continue
                    yield table, value
                    for chunk in re.findall(r'"body": "([A-Za-z0-9+/=]{16,})"', value):
                        yield table, base64.b64decode(chunk).decode("utf-8", "replace")


def file_values(directory: Path):
    for path in sorted(directory.rglob("*")):
        if path.suffix == ".csv":
            yield path.name, path.read_text()
        elif path.suffix == ".xlsx":
            for sheet in openpyxl.load_workbook(path, read_only=True).worksheets:
                for row in sheet.iter_rows(values_only=True):
                    yield path.name, " ".join(str(v) for v in row if v is not None)


def leaks(values) -> list:
    """Addresses outside the sink, and production's hostname (not as part of staging's)."""
    production_host = re.compile(r"(?<![\w.-])" + re.escape(PRODUCTION) + r"(?![\w-])")
    found = []
    for where, value in values:
        for match in ADDRESS.finditer(value):
            if match.group(1) != SINK:
                found.append((where, match.group(0)))
        if production_host.search(value):
            found.append((where, value[:200]))
    return found


def brevet_riders(path: Path) -> list[tuple]:
    """Who is on which brevet: (brevet, first name, last name, address), row by row."""
    with sqlite3.connect(path) as db:
        return db.execute(
            "SELECT brevet_id, first_name, last_name, email FROM brevet_riders"
        ).fetchall()


def sanitised(riders, key: bytes) -> set[tuple]:
    """The riders as the sync puts them on staging: each address becomes its sink address."""
    return {(b, first, last, sink_address(email, SINK, key)) for b, first, last, email in riders}


def organizer_emails(path: Path, event_path: str) -> list[str]:
    """The organizers' addresses of the brevet at `event_path` (/brevets/LM/200/12Jun2026)."""
    region, distance, date = event_path.strip("/").split("/")[1:4]
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT region, distance, date_time, organizer_email FROM brevets")
        found = [
            organizers
            for r, d, when, organizers in rows
            if (r, str(d), datetime.fromisoformat(when).strftime("%d%b%Y"))
            == (region, distance, date)
        ]
    assert len(found) == 1, (event_path, found)
    return [a.strip() for a in found[0].split(",") if a.strip()]


def sign_up(host, domain, email):
    rider = Rider(host, domain)
    answer = rider.sign_up(rider_event(rider), email)
    assert answer.status_code == 302, answer.text[:500]


def rider_event(rider):
    page = rider.get("/brevets/")
    found = re.search(r'href="http://[^"/]+(/brevets/LM/200/[^"]+)"', page.text)
    assert found, page.text[:500]
    return found.group(1)


@pytest.fixture(scope="module")
def host(local_host, mailbox):
    """Production 2026r1 with real-looking riders, one of whose mail is still queued; staging
    2026r2 with a rider of its own. The host's crontab lines are removed at the end."""
    h = local_host
    try:
        h.fab("init_staging", **releases("2026r1", ""))
        h.fab("promote_staging_to_production", "--yes", "--demo", **releases("2026r1", ""))
        for address in REAL[:2]:
            sign_up(h, PRODUCTION, address)
        mailbox.wait_for(4)
        # Mail that production has not sent yet: its worker is stopped when the rider signs up.
        runtime(h, R1, "stop-worker")
        sign_up(h, PRODUCTION, REAL[2])
        h.fab("init_staging", **releases("2026r2", "2026r1"))
        sign_up(h, STAGING, "only.on.staging@example.org")
        yield h
    finally:
        subprocess.run(
            f"crontab -l 2>/dev/null | grep -v ' {h.root}$' | crontab -", shell=True, check=False
        )


def test_sync_copies_production_sanitised_while_production_serves(host, mailbox):
    env = releases("2026r2", "2026r1")
    production_db = host.root / R1 / "RandoPony-production.sqlite"
    production_before = brevet_riders(production_db)
    production_files = {p.name: p.read_bytes() for p in (host.root / R1 / "rider_lists").iterdir()}
    production_lists = sorted(production_files)
    assert production_lists, "production has rider lists to mirror"
    reader = LoopingClient(host, Rider(host).event(), "during-sync-")
    reader.start()
    try:
        wait_until(lambda: reader.requests >= 3, "the looping client to be served")
        done = host.fab("sync_staging", **env)
    finally:
        reader.stop.set()
        reader.join(60)
    assert reader.failures == [], reader.failures
    assert reader.signed_up, "the client signed up during the sync"
    said = done.stdout
    assert "Rows copied per table" in said and "brevet_riders" in said, said
    assert "staging was down" in said and "production's writes waited" in said, said

    # Production: unchanged and still serving; its worker (stopped above) sends the queued mail.
    assert set(production_before) <= set(brevet_riders(production_db))
    after = {p.name: p.read_bytes() for p in (host.root / R1 / "rider_lists").iterdir()}
    assert after == production_files
    assert Rider(host).get("/up").json()["release"] == "2026r1"

    # Staging serves production's riders, sanitised, and nothing of its own old data: every
    # rider production had when the sync began is on staging, on the same event and with the
    # same name, under the sink address of its own; and every rider on staging is one of
    # production's (sign-ups during the sync may or may not be in the snapshot).
    staging_dir = host.root / R2
    staging_db = staging_dir / "RandoPony-staging.sqlite"
    key = (host.root / "deploy" / "sink-key").read_bytes().strip()
    on_staging = set(brevet_riders(staging_db))
    assert sanitised(production_before, key) <= on_staging, on_staging
    assert on_staging <= sanitised(brevet_riders(production_db), key), on_staging
    page = Rider(host, STAGING).get(rider_event(Rider(host, STAGING))).text
    assert "ada.lovelace" in page and "only.on.staging" not in page, page[:1000]

    # Nothing personal left: every text column, the rider list files, the mail queue.
    assert leaks(text_values(staging_db)) == []
    lists = sorted(p.name for p in (staging_dir / "rider_lists").iterdir())
    assert lists and not set(lists) & set(production_lists), (lists, production_lists)
    assert leaks(file_values(staging_dir / "rider_lists")) == []
    queue = staging_dir / "celery.sqlite"
    assert queue.exists(), "staging's worker runs on a queue of its own"
    assert not [v for _, v in text_values(queue) if "telus.net" in v]
    assert leaks(text_values(queue)) == []

    # A sign-up on staging mails the sink only, even from a real address: the organizers'
    # notification arrives at the test's SMTP server, addressed to the organizers' sink
    # addresses; the rider's confirmation, to the real address, is withheld.
    event = rider_event(Rider(host, STAGING))
    organizers = [sink_address(a, SINK, key) for a in organizer_emails(production_db, event)]
    assert organizers
    sign_up(host, STAGING, "someone.real@gmail.com")

    def notified():
        return [
            rcpt
            for rcpt, message, _ in mailbox.messages
            if message["Subject"].startswith("Loop someone.real has pre-registered")
        ]

    wait_until(notified, "the organizers' notification of the staging sign-up to arrive")
    assert notified() == [organizers], notified()

    def outbox():
        with sqlite3.connect(staging_db) as db:
            return db.execute(
                "SELECT to_addrs, sent_at, last_error FROM outbound_emails"
            ).fetchall()

    # Every email of the sign-up has been dealt with by staging's worker (sent or withheld):
    # whatever it was going to send has reached the mailbox by now.
    wait_until(
        lambda: (
            any("someone.real@gmail.com" in to for to, _, _ in outbox())
            and all(sent_at for _, sent_at, _ in outbox())
        ),
        "staging's worker to deal with the sign-up's email",
    )
    recipients = [r for rcpt, _, _ in mailbox.messages for r in rcpt]
    assert "someone.real@gmail.com" not in recipients
    withheld = [error for to, _, error in outbox() if "someone.real@gmail.com" in to]
    assert withheld and all(e.startswith("withheld") for e in withheld), withheld


def test_production_worker_sends_its_own_queued_mail(host, mailbox):
    """The queued mail stayed production's: sent by production, once, to the real address."""
    runtime(host, R1, "start-worker")

    def sent():
        return [r for rcpt, _, _ in mailbox.messages for r in rcpt if r == REAL[2]]

    wait_until(sent, "production's worker to send its queued mail")
    assert sent() == [REAL[2]]


def test_a_refused_sync_changes_nothing(host):
    before = host.tree()
    done = host.fab("sync_staging", check=False, **releases("2026r9", "2026r1"))
    assert done.returncode == 1
    assert "staging release is 2026r2" in done.stderr
    assert host.tree() == before


def test_a_refused_upgrade_attempt_changes_nothing(host):
    before = host.tree()
    syncs = (host.root / "deploy/releases.log").read_text().count('"sync_staging"')
    for args, env, said in (
        (["--minutes=0"], releases("2026r2", "2026r1"), "invalid window '0'"),
        (["--minutes=soon"], releases("2026r2", "2026r1"), "invalid window 'soon'"),
        (["--accept", "--cancel"], releases("2026r2", "2026r1"), "give one of"),
        (["--minutes=30"], releases("2026r2", "2026r9"), "production_release = '2026r1'"),
        (["--accept"], releases("2026r2", "2026r1"), "no upgrade attempt open"),
    ):
        done = host.fab("upgrade_attempt", *args, "--yes", check=False, **env)
        assert done.returncode == 1 and said in done.stderr, (args, done.stderr)
    assert host.tree() == before
    assert (host.root / "deploy/releases.log").read_text().count('"sync_staging"') == syncs


@pytest.mark.parametrize("at", ["copy_database", "sanitize"])
def test_a_sync_killed_leaves_staging_whole_and_the_next_one_finishes(host, at):
    env = releases("2026r2", "2026r1")
    staging_db = host.root / R2 / "RandoPony-staging.sqlite"
    before = riders_in(staging_db)
    address = f"after.{at.replace('_', '')}@gmail.com"
    sign_up(host, PRODUCTION, address)
    killed = host.fab(
        "sync_staging", check=False, RANDOPONY_TEST_CRASH_AFTER_STEP=f"sync:{at}", **env
    )
    assert killed.returncode == 9, killed.stdout + killed.stderr
    assert Rider(host, STAGING).get("/up").status_code == 200
    assert riders_in(staging_db) == before  # nothing of the cut-off run is served
    done = host.fab("sync_staging", **env)
    if at == "sanitize":
        assert "Finishing the sync of 2026r2 cut off after sanitize" in done.stdout
        assert "→ copy_database" not in done.stdout
    else:
        assert "starting again" in done.stdout and "→ copy_database" in done.stdout
    key = (host.root / "deploy" / "sink-key").read_bytes().strip()
    assert sink_address(address, SINK, key) in riders_in(staging_db)
    assert not (host.root / "deploy/sync.json").exists()
    assert not (host.root / R2 / "sync").exists()


def test_nightly_schedule_runs_as_cron_runs_it(host):
    env = releases("2026r2", "2026r1")
    done = host.fab("schedule_sync_staging", "--at=3:07", **env)
    assert "every day at 03:07" in done.stdout, done.stdout
    line = next(
        line
        for line in subprocess.run(
            ["crontab", "-l"], capture_output=True, text=True
        ).stdout.splitlines()
        if line.endswith(f"randopony sync_staging {host.root}")
    )
    assert line.startswith("7 3 * * * ")
    assert "sync_staging runs nightly at 03:07" in host.fab("releases", **env).stdout
    assert host.fab("schedule_sync_staging", "--at=25:00", check=False, **env).returncode == 1

    sign_up(host, PRODUCTION, "nightly.new@gmail.com")
    command = line[len("7 3 * * * ") : line.index(" # randopony")]
    subprocess.run(["sh", "-c", command], check=True, env={"PATH": "/usr/bin:/bin"}, timeout=300)
    log = (host.root / "logs/user/sync_staging.log").read_text()
    assert "✓ swap_in" in log and "Rows copied per table" in log, log[-3000:]
    staging_riders = riders_in(host.root / R2 / "RandoPony-staging.sqlite")
    # Under the host's own sink key (0400, outside every release), the same each night.
    key_file = host.root / "deploy" / "sink-key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o400
    key = key_file.read_bytes().strip()
    assert sink_address("nightly.new@gmail.com", SINK, key) in staging_riders

    host.fab("schedule_sync_staging", "--remove", **env)
    listed = subprocess.run(["crontab", "-l"], capture_output=True, text=True).stdout
    assert str(host.root) not in listed


def test_upgrade_attempt_cancelled_keeps_the_window_s_registrations(host):
    env = releases("2026r2", "2026r1")
    done = host.fab("upgrade_attempt", "--minutes=30", "--yes", **env)
    assert "Upgrade attempt: 2026r2 is production" in done.stdout, done.stdout
    assert Rider(host).get("/up").json()["release"] == "2026r2"
    sign_up(host, PRODUCTION, "in.window.one@gmail.com")
    assert "open until" in host.fab("releases", **releases("2026r2", "2026r2")).stdout

    # The window runs out: the host's reminder says so; nothing changes.
    attempt_file = host.root / "deploy/upgrade_attempt.json"
    attempt = json.loads(attempt_file.read_text())
    attempt["ends"] = "2026-01-01T00:00:00+00:00"
    attempt_file.write_text(json.dumps(attempt))
    reminder = host.root / "deploy/bin/upgrade_reminder"
    subprocess.run([str(reminder)], check=True, capture_output=True)
    subprocess.run(
        ["sh", "-c", f"{reminder} >> {host.root}/logs/user/upgrade_reminder.log 2>&1"], check=True
    )
    said = (host.root / "logs/user/upgrade_reminder.log").read_text()
    assert "window ended" in said and "--accept" in said, said
    assert "window ended" in host.fab("releases", **releases("2026r2", "2026r2")).stdout
    assert Rider(host).get("/up").json()["release"] == "2026r2"

    done = host.fab("upgrade_attempt", "--cancel", "--yes", **releases("2026r2", "2026r2"))
    assert "production is 2026r1 again" in done.stdout, done.stdout
    assert Rider(host).get("/up").json()["release"] == "2026r1"
    assert "in.window.one@gmail.com" in riders_in(host.root / R1 / "RandoPony-production.sqlite")
    assert not attempt_file.exists()
    assert (
        "upgrade_reminder"
        not in subprocess.run(["crontab", "-l"], capture_output=True, text=True).stdout
    )


def test_upgrade_attempt_accepted_keeps_the_new_release(host):
    host.fab("init_staging", **releases("2026r3", "2026r1"))
    env = releases("2026r3", "2026r1")
    done = host.fab("upgrade_attempt", "--minutes=60", "--yes", **env)
    # No new migration: the hold runs no alembic (the head was learnt before the hold).
    assert "already at the code's head 0004: no alembic run" in done.stdout, done.stdout
    sign_up(host, PRODUCTION, "in.window.two@gmail.com")
    after = releases("2026r3", "2026r3")
    refused = host.fab("upgrade_attempt", "--minutes=5", "--yes", check=False, **after)
    assert refused.returncode == 1 and "is open until" in refused.stderr
    done = host.fab("upgrade_attempt", "--accept", **after)
    assert "2026r3 stays production" in done.stdout
    assert Rider(host).get("/up").json()["release"] == "2026r3"
    riders = riders_in(host.root / R3 / "RandoPony-production.sqlite")
    assert {"in.window.one@gmail.com", "in.window.two@gmail.com"} <= set(riders)
    events = [json.loads(line)["event"] for line in (host.root / "deploy/releases.log").open()]
    assert events.count("upgrade_attempt") == 2
    assert "upgrade_attempt_cancelled" in events and "upgrade_attempt_accepted" in events
    assert "upgrade attempt" not in host.fab("releases", **after).stdout.lower()
