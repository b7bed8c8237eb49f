"""Benchmark: a long soak of production through the router, the way riders use it, counting
what breaks: failed requests, sign-ups not stored exactly once, release processes that exit
when nobody asked them to, fatal Python errors, and the host's memory.

    .venv/bin/python bench/soak.py [--minutes 10] [--clients 8] [--riders 4000]
                                   [--cycle-every 0] [--kill-every 0] [--offending-build]
                                   [--app-processes N] [--json OUT]

A temporary host (panel and router, mail sink, all under supervisord as `make run` has them)
gets release 2026r1 in production with the demo events, as `make run` does, membership check
included (on a machine without internet it always ends in a connection error, as in the crash
report). One brevet is given --riders riders. Then --clients looping clients, each a rider's
browser: load the event page; one time in four, open the entry form and sign up with a new
address.

--cycle-every S: every S seconds, a new release goes to staging and is promoted, and the
previous cycle's release is rolled back half-way to the next: the soak of the hardening issue.

--kill-every S: every S seconds, one of production's app processes (in turn) is killed with
SIGKILL, a crash on demand: what the guard keeps from the riders.

--offending-build: production runs the membership check of before the crash fix (requests,
with charset-normalizer 3.5.2's compiled build in the release's virtualenv): with it, the
release's processes crash, and the figures show what the guard alone (two app processes on
one socket, the router's retries) keeps from the riders.

The last line is `RESULT failed=... crashes=... fatal=... ...`. Everything lives in temporary
directories that are removed at the end, also on failure or Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import requests

CHECKOUT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(CHECKOUT))

from bench.promote import DB, BenchHost, other_hosts, say  # noqa: E402
from deploy.host import paths, release_runtime, service, supervisor  # noqa: E402

# The membership check as it was before the crash fix, for --offending-build.
OFFENDING_MEMBERSHIP = '''"""The membership check of before the crash fix (bench/soak.py)."""
import logging
from urllib.parse import quote

import requests

log = logging.getLogger(__name__)


def check_membership(url_template, first_name, last_name, timeout):
    url = url_template.format(first_name=quote(first_name), last_name=quote(last_name))
    try:
        response = requests.get(url, timeout=timeout)
        response.raise_for_status()
        answer = response.json()["is_current_member"]
    except (requests.RequestException, ValueError, KeyError, TypeError) as error:
        log.warning("membership check for %s %s failed: %s", first_name, last_name, error)
        return None
    return answer if isinstance(answer, bool) else None
'''
OFFENDING_PACKAGES = ("requests==2.34.2", "charset-normalizer==3.5.2")


class Rider(threading.Thread):
    """A rider's browser in a loop: the event page; every fourth time, the form and a sign-up."""

    def __init__(self, host: BenchHost, event: str, number: int, stop: threading.Event):
        super().__init__(daemon=True)
        self.host, self.event, self.number, self.stop = host, event, number, stop
        self.requests = 0
        self.failures: Counter = Counter()
        self.signed_up: list[str] = []

    def call(self, browser, method, path, **kw):
        self.requests += 1
        try:
            answer = browser.request(
                method,
                self.host.url(path),
                headers={"Host": self.host.host_header},
                timeout=120,
                allow_redirects=False,
                **kw,
            )
        except requests.RequestException as error:
            self.failures[(method, type(error).__name__)] += 1
            return None
        if answer.status_code >= 400:
            self.failures[(method, answer.status_code)] += 1
        return answer

    def run(self) -> None:
        browser = requests.Session()
        n = 0
        while not self.stop.is_set():
            n += 1
            self.call(browser, "GET", self.event)
            if n % 4:
                continue
            form = self.call(browser, "GET", self.event + "/entry")
            token = re.search(r'name="csrf_token" value="([^"]+)"', form.text) if form else None
            if not token:
                continue
            email = f"soak-{self.number}-{n}@example.org"
            answer = self.call(
                browser,
                "POST",
                self.event + "/entry",
                data={
                    "csrf_token": token.group(1),
                    "email": email,
                    "first_name": "Soak",
                    "last_name": f"R{self.number}x{n}",
                    "bike_type": "single",
                    "info_answer": "No",
                },
            )
            if answer is not None and answer.status_code == 302:
                self.signed_up.append(email)


def add_riders(database: Path, event_path: str, count: int) -> int:
    """`count` riders on the brevet at event_path, written straight into the database; the
    page token changes so every process renders the list anew."""
    region, distance = event_path.split("/")[2:4]
    with sqlite3.connect(database, timeout=60) as db:
        brevet_id = db.execute(
            "SELECT id FROM brevets WHERE region = ? AND distance = ? ORDER BY date_time LIMIT 1",
            (region, int(distance)),
        ).fetchone()[0]
        db.executemany(
            "INSERT INTO brevet_riders (brevet_id, email, first_name, last_name, bike_type,"
            " registered_at) VALUES (?, ?, ?, ?, 'single', CURRENT_TIMESTAMP)",
            ((brevet_id, f"seed{i}@example.org", "Seed", f"Rider{i:05d}") for i in range(count)),
        )
        db.execute("UPDATE page_generation SET token = ?", (str(uuid.uuid4()),))
        return db.execute(
            "SELECT count(*) FROM brevet_riders WHERE brevet_id = ?", (brevet_id,)
        ).fetchone()[0]


def put_offending_build_back(host: BenchHost, release: str) -> None:
    directory = host.release_dir(release)
    subprocess.run(
        ["python3", "-m", "uv", "pip", "install", "--quiet", "--python"]
        + [str(directory / "env/bin/python"), *OFFENDING_PACKAGES],
        check=True,
    )
    (directory / "src/app/membership.py").write_text(OFFENDING_MEMBERSHIP)


def set_app_processes(host: BenchHost, release: str, processes: int) -> None:
    """Run the release's app as `processes` processes on its shared socket (a restart)."""
    directory = host.release_dir(release)
    python = str(directory / "env/bin/python")
    runtime = [python, "-m", "deploy.host.release_runtime", str(directory)]
    subprocess.run([*runtime, "stop-supervisor"], cwd=directory, check=True)
    conf = directory / "supervisord.conf"
    conf.write_text(re.sub(r"(?m)^numprocs=\d+$", f"numprocs={processes}", conf.read_text()))
    subprocess.run([*runtime, "start-supervisor"], cwd=directory, check=True)


def kill_an_app_process(host: BenchHost, release: str, kills: int) -> int:
    """SIGKILL one of the release's running app processes, in turn; 1 if one was killed."""
    sock = host.release_dir(release) / "supervisor.sock"
    running = sorted(
        (p for p in supervisor.programs(sock) if p.group == "app" and p.state == "RUNNING"),
        key=lambda p: p.name,
    )
    if not running:
        return 0
    victim = running[kills % len(running)]
    os.kill(victim.pid, signal.SIGKILL)
    say(f"# killed {release} {victim.name} (pid {victim.pid})")
    return 1


def rss_mb(pid: int | None) -> float | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, TypeError):
        return None
    return int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024


def crashes_and_fatal_errors(host: BenchHost) -> tuple[list[dict], int]:
    crashes, fatal = [], 0
    for directory in sorted(paths.webapps(host.root).iterdir()):
        crashes += [
            {**crash, "release": directory.name} for crash in release_runtime.crashes(directory)
        ]
        for log in directory.glob("*.log*"):
            fatal += log.read_text(errors="replace").count("Fatal Python error")
    return crashes, fatal


def app_errors(host: BenchHost) -> dict[str, int]:
    """The exceptions the releases' apps logged (the last line of each traceback), counted."""
    found: Counter = Counter()
    for log in paths.webapps(host.root).glob("*/pyramid.log*"):
        in_traceback = False
        for line in log.read_text(errors="replace").splitlines():
            if line.startswith("Traceback"):
                in_traceback = True
            elif in_traceback and line and not line[0].isspace():
                found[line[:200]] += 1
                in_traceback = False
    return dict(found)


def serving_release(host: BenchHost) -> str:
    answer = requests.get(host.url("/up"), headers={"Host": host.host_header}, timeout=30)
    return answer.json()["release"]


def cycle(host: BenchHost, number: int, production: str, pending: list) -> str:
    """Roll back the previous cycle's promotion, if any; then promote a new release."""
    if pending:
        rolled_back, back_to = pending.pop()
        say(f"# cycle {number}: rolling {rolled_back} back to {back_to}")
        host.fab(
            "rollback_production", "--yes", staging=f"2026r{number + 1}", production=rolled_back
        )
        production = back_to
    new = f"2026r{number + 1}"
    say(f"# cycle {number}: {new} to staging, then promoted over {production}")
    host.fab("init_staging", staging=new, production=production)
    host.fab("promote_staging_to_production", "--yes", staging=new, production=production)
    pending.append((new, production))
    return new


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--riders", type=int, default=4000, help="riders on the soaked event")
    parser.add_argument("--cycle-every", type=float, default=0, metavar="SECONDS")
    parser.add_argument("--offending-build", action="store_true")
    parser.add_argument(
        "--kill-every",
        type=float,
        default=0,
        metavar="SECONDS",
        help="SIGKILL one of production's app processes this often (a crash on demand)",
    )
    parser.add_argument(
        "--app-processes", type=int, help="production's app processes (default: the release's)"
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    host = BenchHost(wait_limit=30)
    results: dict = {"date": time.strftime("%Y-%m-%d"), **vars(args)}
    results["json"] = str(args.json) if args.json else None
    try:
        run(host, args, results)
    finally:
        host.down()
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(
        "RESULT "
        + " ".join(
            f"{key}={results.get(key)}"
            for key in (
                "requests",
                "failed",
                "signups",
                "stored_once",
                "crashes",
                "fatal",
                "router_rss_start_mb",
                "router_rss_end_mb",
                "cycles",
                "kills",
            )
        )
    )
    return 0


def run(host: BenchHost, args, results: dict) -> None:
    for other in other_hosts(host.root):
        say(f"# WARNING: another local host runs on this machine: {other}")
    host.up()
    host.fab("init_staging", staging="2026r1", production=None)
    if args.offending_build:
        put_offending_build_back(host, "2026r1")
        say(f"# 2026r1 runs the membership check of before the fix, with {OFFENDING_PACKAGES}")
    host.fab("promote_staging_to_production", "--yes", "--demo", staging="2026r1", production=None)
    if args.app_processes:
        set_app_processes(host, "2026r1", args.app_processes)
        say(f"# production runs {args.app_processes} app process(es)")
    page = requests.get(host.url("/brevets/"), headers={"Host": host.host_header}, timeout=30)
    event = re.search(r'href="http://[^"/]+(/brevets/LM/200/[^"]+)"', page.text).group(1)
    results["riders_on_event"] = add_riders(host.release_dir("2026r1") / DB, event, args.riders)
    say(f"# production 2026r1; {event} has {results['riders_on_event']} riders")

    host_pid = service.host_status(host.root).pid
    results["router_rss_start_mb"] = round(rss_mb(host_pid), 1)
    stop = threading.Event()
    riders = [Rider(host, event, number, stop) for number in range(args.clients)]
    for rider in riders:
        rider.start()
    started = time.monotonic()
    end = started + args.minutes * 60
    production, pending, cycles, next_cycle = "2026r1", [], 0, started + args.cycle_every
    said_at, kills, next_kill = 0, 0, started + args.kill_every
    try:
        while time.monotonic() < end:
            if args.cycle_every and time.monotonic() >= next_cycle:
                cycles += 1
                production = cycle(host, cycles, production, pending)
                next_cycle += args.cycle_every
            if args.kill_every and time.monotonic() >= next_kill:
                kills += kill_an_app_process(host, production, kills)
                next_kill += args.kill_every
            time.sleep(1)
            elapsed = int(time.monotonic() - started)
            if elapsed // 30 != said_at // 30:
                said_at = elapsed
                done = sum(r.requests for r in riders)
                failed = sum(sum(r.failures.values()) for r in riders)
                crashes, _ = crashes_and_fatal_errors(host)
                say(f"# {elapsed} s: {done} requests, {failed} failed, {len(crashes)} crashes")
    finally:
        stop.set()
        for rider in riders:
            rider.join(180)
    results["seconds"] = round(time.monotonic() - started, 1)
    results["router_rss_end_mb"] = round(rss_mb(service.host_status(host.root).pid), 1)
    results["host_pid_unchanged"] = service.host_status(host.root).pid == host_pid
    failures: Counter = Counter()
    for rider in riders:
        failures.update(rider.failures)
    signed_up = [email for rider in riders for email in rider.signed_up]
    serving = serving_release(host)
    with sqlite3.connect(host.release_dir(serving) / DB, timeout=60) as db:
        stored = Counter(
            email
            for (email,) in db.execute("SELECT email FROM brevet_riders WHERE email LIKE 'soak-%'")
        )
    crashes, fatal = crashes_and_fatal_errors(host)
    results["app_errors"] = app_errors(host)
    results.update(
        requests=sum(r.requests for r in riders),
        failed=sum(failures.values()),
        failures={f"{method} {why}": n for (method, why), n in failures.items()},
        signups=len(signed_up),
        stored_once=sum(1 for email in signed_up if stored[email] == 1),
        crashes=len(crashes),
        crash_list=crashes,
        fatal=fatal,
        cycles=cycles,
        kills=kills,
        serving=serving,
    )
    say(json.dumps({k: v for k, v in results.items() if k != "crash_list"}, default=str))
    for crash in crashes[:20]:
        say(f"# unexpected exit: {crash}")


if __name__ == "__main__":
    sys.exit(main())
