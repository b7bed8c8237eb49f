"""Benchmark: promoting staging to production, and rolling back, under wrk load on a real local
host, against the seed guide's own sequence in the same run; and the consistent copy of the
production database against `cp` of the same file.

    .venv/bin/python bench/promote.py [--size-mb 1024] [--copy-rounds 3] [--json OUT]

A temporary host (panel, router and a mail sink under supervisord, as `make run` has them) gets
release 2026r1 in production (the demo events); its database is grown to --size-mb with a filler
table of random text while it serves. Then, with wrk (-t2 -c16: GETs of event and list pages,
one request in ten a sign-up POST with a valid session and CSRF token, every address unique)
running through the router on the production domain:

1. `fab promote_staging_to_production --yes`: 2026r2 over 2026r1;
2. `fab rollback_production --yes`: 2026r1 back;
3. the same two with a small migration: `fab promote_staging_to_production --yes` for 2026r4, whose
   code adds a column (alembic upgrade under the hold), then `fab rollback_production --yes`
   (the column dropped by alembic downgrade under the hold);
4. the seed guide's sequence for 2026r3 over 2026r1, run here with the deploy/ building blocks:
   stop the staging release, swap its ini; stop production's supervisord, detach the production
   domain (update_website), copy the databases with `cp`, attach the domain to the new website,
   start the new release's supervisord and wait for /up.

Then 15 s of the same load with nothing happening, as the baseline for the longest request.

Each operation starts 1 s after wrk and wrk stops 1 s after it ends. Two probe clients (one GET,
one sign-up at a time) time the longest stretch without a successful read and without a
successful write. Failures are wrk's non-2xx/3xx answers plus its socket errors; their causes
are read from the router's access logs. Everything lives in temporary directories, which are
removed at the end (also on failure or Ctrl-C); nothing is written elsewhere except --json.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import random
import re
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import requests

CHECKOUT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(CHECKOUT))

from bench.db_copy import clean, fsync, timed  # noqa: E402
from deploy.flows.release import read_json, read_release_env, write_bin_scripts  # noqa: E402
from deploy.host import layout, paths, release_runtime, service, supervisor  # noqa: E402
from deploy.host.db_copy import consistent_copy  # noqa: E402
from deploy.remote.hosts import LocalHost  # noqa: E402
from deploy.remote.panel_client import HostingAPI  # noqa: E402

BIN = Path(sys.executable).parent
LUA = Path(__file__).resolve().with_name("promote_load.lua")
DOMAIN = "randopony.localhost"
HOSTING_USER, HOSTING_PASSWORD = "randopony", "bench-hosting-password"
WRANGLER_PASSWORD = "bench-wrangler-password"
R1, R2, R3, R4 = "2026r1", "2026r2", "2026r3", "2026r4"
DB = "RandoPony-production.sqlite"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def other_hosts(root: Path) -> list[str]:
    """Other local hosts running on this machine (the deploy tests, `make run`): their panels
    hand out app ports from the same range, and an app stopped during a promotion frees a port
    that another host may give away (see check_ports)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if b"deploy.host.server" in argv and b"serve" in argv and str(root).encode() not in argv:
            found.append(f"pid {cmdline.parent.name}: " + b" ".join(argv).decode(errors="replace"))
    return found


def check_ports(host: BenchHost, *releases: str) -> None:
    """Each running release's port must be bound by that release's own app, not by another
    local host's app that took the port while ours was stopped."""
    for release in releases:
        directory = host.release_dir(release)
        port = json.loads((directory / layout.RELEASE_JSON).read_text())["port"]
        listening = subprocess.run(
            ["ss", "-ltnpH", f"sport = :{port}"], capture_output=True, text=True
        ).stdout
        pid = re.search(r"pid=(\d+)", listening)
        if pid is None:
            continue
        try:
            cwd = Path(os.readlink(f"/proc/{pid.group(1)}/cwd"))
        except OSError:
            continue
        if not cwd.is_relative_to(directory):
            raise RuntimeError(
                f"port {port} of {release} is served by pid {pid.group(1)} in {cwd}, not by "
                f"{directory}: another local host on this machine gave it out (the deploy "
                "tests?). The figures would be another host's; run the benchmark alone."
            )


# The host


class BenchHost:
    """A host root under /tmp (short: supervisord's socket paths), a copy of the checkout to
    deploy, the host's panel, router and mail sink, and `fab` run against them."""

    def __init__(self, wait_limit: float):
        self.root = Path(tempfile.mkdtemp(prefix="rp-pb-"))
        self.checkout = Path(tempfile.mkdtemp(prefix="rp-pb-co-"))
        self.panel_port, self.router_port, self.mail_port = free_port(), free_port(), free_port()
        self.wait_limit = wait_limit
        self.env = dict(
            os.environ,
            RANDOPONY_HOST_ROOT=str(self.root),
            RANDOPONY_HOSTING_API=f"http://127.0.0.1:{self.panel_port}/",
            RANDOPONY_HOSTING_PASSWORD=HOSTING_PASSWORD,
            RANDOPONY_WRANGLER_PASSWORD=WRANGLER_PASSWORD,
            RANDOPONY_CHECKOUT=str(self.checkout),
        )

    def up(self) -> None:
        subprocess.run(
            ["rsync", "-a", "--exclude=.venv", "--exclude=var", "--exclude=.git"]
            + ["--exclude=__pycache__", f"{CHECKOUT}/", f"{self.checkout}/"],
            check=True,
        )
        subprocess.run(
            [sys.executable, "-m", "deploy.host.server", "set-password", "--root", str(self.root)]
            + [HOSTING_USER],
            input=HOSTING_PASSWORD + "\n",
            text=True,
            check=True,
            capture_output=True,
            cwd=CHECKOUT,
        )
        # The releases mail the host's sink (the worker sends after the request: mail never
        # holds up a sign-up, but a sink that answers keeps the worker from retrying).
        (self.root / "deploy").mkdir(exist_ok=True)
        (self.root / "deploy" / "release.env").write_text(
            f"RANDOPONY_SMTP_HOST=127.0.0.1\nRANDOPONY_SMTP_PORT={self.mail_port}\n"
        )
        ports = {}
        if "app_ports" in inspect.signature(service.host_up).parameters:
            # App ports of this host's own, away from `make run`'s (20000 up); the deploy tests
            # pick random blocks too, and check_ports catches the rare clash.
            first = random.randrange(21000, 32000, 100)
            ports["app_ports"] = f"{first}-{first + 99}"
        service.host_up(
            self.root,
            self.panel_port,
            self.router_port,
            wait_limit=self.wait_limit,
            mail_port=self.mail_port,
            **ports,
        )

    def down(self) -> None:
        for sock in (self.root / "webapps").glob("*/supervisor.sock"):
            try:
                supervisor.shutdown(sock, timeout=90)
            except supervisor.SupervisorError as error:
                print(f"# could not stop {sock.parent.name}: {error}", file=sys.stderr)
        try:
            service.host_down(self.root)
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
            shutil.rmtree(self.checkout, ignore_errors=True)

    def fab(self, *args: str, staging: str, production: str | None) -> str:
        """`.venv/bin/fab` from the checkout, as a maintainer runs it, against this host."""
        env = dict(
            self.env,
            RANDOPONY_STAGING_RELEASE=staging,
            RANDOPONY_PRODUCTION_RELEASE=production or "",
        )
        done = subprocess.run(
            [str(BIN / "fab"), *args],
            cwd=CHECKOUT,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
            stdin=subprocess.DEVNULL,
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"fab {' '.join(args)} failed (exit {done.returncode}):\n"
                f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
            )
        return done.stdout

    def release_dir(self, release: str) -> Path:
        return Path(layout.release_dir(self.root, "randopony", release))

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.router_port}{path}"

    @property
    def host_header(self) -> str:
        return f"{DOMAIN}:{self.router_port}"

    def last_release_event(self) -> dict:
        lines = (self.root / "deploy" / "releases.log").read_text().splitlines()
        return json.loads(lines[-1])

    def access_log_offsets(self) -> dict[Path, int]:
        folder = paths.frontend_logs(self.root)
        return {path: path.stat().st_size for path in folder.glob("*.access.log")}

    def failures_logged_since(self, offsets: dict[Path, int]) -> Counter:
        """Router access log lines with a failing status since the offsets: (website, method,
        status) -> count. The router flushes its logs about once a second."""
        found: Counter = Counter()
        for website, line in self.access_lines_since(offsets):
            found_request = re.search(r'"(\w+) \S+ HTTP/[\d.]+" (\d+) ', line)
            if found_request and not 200 <= int(found_request.group(2)) < 400:
                found[(website, found_request.group(1), int(found_request.group(2)))] += 1
        return found

    def access_lines_since(self, offsets: dict[Path, int]):
        """(website, line) of the router's access logs since the offsets."""
        for path in paths.frontend_logs(self.root).glob("*.access.log"):
            with open(path, "rb") as log:
                log.seek(offsets.get(path, 0))
                text = log.read().decode(errors="replace")
            website = path.name.removesuffix(".access.log")
            for line in text.splitlines():
                yield website, line

    def longest_requests_since(self, offsets: dict[Path, int], journal_offset: int) -> list[dict]:
        """The five longest requests in the router's access logs since the offsets, each with the
        step of the operation (from the host's journal) that was running when it started. Both
        logs stamp whole seconds, so a step is named to within a second."""
        journal = self.root / "deploy" / "journal.log"
        steps = []
        with open(journal, "rb") as log:
            log.seek(journal_offset)
            for line in log.read().decode(errors="replace").splitlines():
                entry = json.loads(line)
                if entry.get("state") == "started":
                    moment = datetime.fromisoformat(entry["time"]).timestamp()
                    steps.append((moment, entry["step"]))
        found = []
        for website, line in self.access_lines_since(offsets):
            match = re.match(r'(\S+) .*"(\w+) \S+ HTTP/[\d.]+" (\d+) ([\d.]+)$', line)
            if not match:
                continue
            seconds = float(match.group(4))
            begun = datetime.strptime(match.group(1), "%Y-%m-%dT%H:%M:%S%z").timestamp()
            begun -= seconds
            during = [name for moment, name in steps if moment <= begun + 0.5]
            found.append(
                {
                    "seconds": seconds,
                    "method": match.group(2),
                    "website": website.removeprefix("randopony"),
                    "status": int(match.group(3)),
                    "during": during[-1] if during else "before the operation",
                }
            )
        return sorted(found, key=lambda r: r["seconds"], reverse=True)[:5]


# The production database


def grow_database(path: Path, size_mb: int) -> float:
    """A filler table of random text (~1 KB a row) added to the live database, in 8 MB
    transactions so the app's own writes can interleave; the WAL is truncated at the end."""
    started = time.monotonic()
    conn = sqlite3.connect(path, isolation_level=None, timeout=60)
    conn.execute("CREATE TABLE IF NOT EXISTS bench_filler (id INTEGER PRIMARY KEY, notes TEXT)")
    while path.stat().st_size < size_mb << 20:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 8000)"
            " INSERT INTO bench_filler (notes) SELECT hex(randomblob(480)) FROM c"
        )
        conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return time.monotonic() - started


def copy_against_cp(db: Path, workdir: Path, rounds: int) -> dict:
    """bench/db_copy.py's comparison, on the production database as it is on the host (the
    running app holds connections): cp, cp + fsync and the consistent copy, interleaved."""
    out = workdir / "copy-bench.sqlite"
    runs: dict[str, list[float]] = {"cp": [], "cp + fsync": [], "consistent_copy": []}
    locks = []
    try:
        for _ in range(rounds):
            runs["cp"].append(timed(lambda: subprocess.run(["cp", db, out], check=True)))
            clean(out)
            runs["cp + fsync"].append(
                timed(lambda: (subprocess.run(["cp", db, out], check=True), fsync(out)))
            )
            clean(out)
            result = consistent_copy(db, out)
            runs["consistent_copy"].append(result.seconds)
            locks.append(result.lock_seconds)
            clean(out)
    finally:
        clean(out)
    cp = statistics.median(runs["cp"])
    return {
        "bytes": db.stat().st_size,
        "runs": runs,
        "median": {name: statistics.median(values) for name, values in runs.items()},
        "speed_vs_cp": {name: cp / statistics.median(values) for name, values in runs.items()},
        "consistent_copy_lock_seconds": statistics.median(locks),
    }


def riders_like(db: Path, pattern: str) -> int:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        return conn.execute(
            "SELECT count(*) FROM brevet_riders WHERE email LIKE ?", (pattern,)
        ).fetchone()[0]
    finally:
        conn.close()


# The load


@dataclass
class Site:
    """What the load needs to know about the production site: pages and a session."""

    reads: list[str]
    events: list[str]
    cookie: str
    token: str


def discover(host: BenchHost) -> Site:
    headers = {"Host": host.host_header}
    browser = requests.Session()
    page = browser.get(host.url("/brevets/"), headers=headers, timeout=30)
    paths = sorted(set(re.findall(r'href="http://[^"/]+(/brevets/[A-Z]+/\d+/[^"/]+)"', page.text)))
    events, token = [], None
    for path in paths:
        form = browser.get(host.url(path + "/entry"), headers=headers, timeout=30)
        found = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
        if form.status_code == 200 and found:
            events.append(path)
            token = found.group(1)
    if not events:
        raise RuntimeError(f"no brevet open for sign-up on /brevets/: {page.text[:500]}")
    cookie = "; ".join(f"{name}={value}" for name, value in browser.cookies.items())
    reads = [*paths, *paths, "/brevets/", "/", "/populaires/"]
    return Site(reads, events, cookie, token)


class Probe(threading.Thread):
    """One client doing one thing in a loop (a read, or a sign-up), noting when each request
    started and ended and whether it succeeded."""

    def __init__(self, host: BenchHost, site: Site, kind: str, tag: str, pause: float):
        super().__init__(daemon=True)
        self.host, self.site, self.kind, self.tag, self.pause = host, site, kind, tag, pause
        self.stopping = threading.Event()
        self.log: list[tuple[float, float, bool]] = []

    def run(self) -> None:
        browser = requests.Session()
        headers = {"Host": self.host.host_header}
        post_headers = {**headers, "Cookie": self.site.cookie}
        n = 0
        while not self.stopping.is_set():
            n += 1
            started = time.monotonic()
            try:
                if self.kind == "read":
                    path = self.site.events[n % len(self.site.events)]
                    answer = browser.get(self.host.url(path), headers=headers, timeout=90)
                    ok = answer.status_code == 200
                else:
                    path = self.site.events[n % len(self.site.events)] + "/entry"
                    answer = requests.post(
                        self.host.url(path),
                        headers=post_headers,
                        data={
                            "csrf_token": self.site.token,
                            "email": f"{self.tag}-probe-{n}@example.org",
                            "first_name": "Probe",
                            "last_name": f"N{n}",
                            "bike_type": "single",
                            "info_answer": "No",  # an event with a question needs an answer
                        },
                        timeout=90,
                        allow_redirects=False,
                    )
                    ok = answer.status_code == 302
            except requests.RequestException:
                ok = False
            self.log.append((started, time.monotonic(), ok))
            time.sleep(self.pause)

    def longest_unserved(self, start: float, end: float) -> float:
        """The longest time within [start, end] that passed without a successful answer."""
        last = start
        longest = 0.0
        for _, finished, ok in self.log:
            if ok and start <= finished <= end:
                longest = max(longest, finished - last)
                last = finished
        return max(longest, end - last)

    def failures(self) -> int:
        return sum(1 for _, _, ok in self.log if not ok)


@dataclass
class Measured:
    name: str
    seconds: float = 0.0
    requests: int = 0
    failed: int = 0
    statuses: dict = field(default_factory=dict)
    socket_errors: dict = field(default_factory=dict)
    longest_request_ms: float = 0.0
    p99_ms: float = 0.0
    requests_per_second: float = 0.0
    longest_without_read: float = 0.0
    longest_without_write: float = 0.0
    probe_failures: int = 0
    signups_answered: int = 0
    signups_stored: int | None = None
    write_hold_seconds: float | None = None
    failures_logged: dict = field(default_factory=dict)
    router_reasons: dict = field(default_factory=dict)
    error: str | None = None
    output: str = ""
    details: dict = field(default_factory=dict)


def to_ms(text: str) -> float:
    found = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if not found:
        say(f"# wrk printed a latency this bench cannot read: {text!r}")
        return float("nan")
    value, unit = found.groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0, "h": 3.6e6}[unit]


def parse_wrk(output: str, measured: Measured) -> None:
    latency = re.search(r"Latency\s+(\S+)\s+(\S+)\s+(\S+)", output)
    measured.longest_request_ms = to_ms(latency.group(3)) if latency else 0.0
    p99 = re.search(r"99%\s+(\S+)", output)
    measured.p99_ms = to_ms(p99.group(1)) if p99 else 0.0
    measured.requests = int(re.search(r"(\d+) requests in", output).group(1))
    measured.requests_per_second = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))
    measured.statuses = {
        int(code): int(count) for code, count in re.findall(r"^status (\d+) (\d+)$", output, re.M)
    }
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    if errors:
        measured.socket_errors = dict(
            zip(("connect", "read", "write", "timeout"), map(int, errors.groups()), strict=True)
        )
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    bad = sum(n for code, n in measured.statuses.items() if not 200 <= code < 400)
    measured.failed = max(bad, int(non_2xx.group(1)) if non_2xx else 0) + sum(
        measured.socket_errors.values()
    )
    measured.signups_answered = measured.statuses.get(302, 0)


def under_load(
    host: BenchHost, site: Site, name: str, tag: str, operation, post_every: int
) -> Measured:
    """wrk and the two probes running; the operation starts after 1 s; wrk stops 1 s after it
    ends. Returns the figures, with whatever the operation returned in details."""
    env = dict(
        os.environ,
        PONY_HOST=host.host_header,
        PONY_READS=" ".join(site.reads),
        PONY_EVENTS=" ".join(site.events),
        PONY_COOKIE=site.cookie,
        PONY_TOKEN=site.token,
        PONY_EVERY=str(post_every),
        PONY_TAG=tag,
    )
    command = ["wrk", "-t2", "-c16", "-d3600s", "--timeout", "90s", "--latency"]
    command += ["-s", str(LUA), host.url("/")]
    offsets = host.access_log_offsets()
    journal = host.root / "deploy" / "journal.log"
    journal_offset = journal.stat().st_size if journal.exists() else 0
    host_log = paths.host_logs(host.root) / "host.log"
    host_log_offset = host_log.stat().st_size if host_log.exists() else 0
    load = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    probes = [
        Probe(host, site, "read", tag, 0.05),
        Probe(host, site, "write", tag, 0.2),
    ]
    measured = Measured(name)
    try:
        for probe in probes:
            probe.start()
        time.sleep(1.0)
        started = ended = time.monotonic()
        try:
            measured.details = operation() or {}
        except Exception as error:  # the figures so far are still worth showing
            measured.error = f"{type(error).__name__}: {error}"
        ended = time.monotonic()
        measured.seconds = ended - started
        time.sleep(1.0)
    finally:
        if load.poll() is None:
            load.send_signal(signal.SIGINT)  # wrk stops and prints its summary
        for probe in probes:
            probe.stopping.set()
        output = load.communicate(timeout=120)[0].decode(errors="replace")
        for probe in probes:
            probe.join(120)
    measured.output = output
    parse_wrk(output, measured)
    measured.longest_without_read = probes[0].longest_unserved(started, ended)
    measured.longest_without_write = probes[1].longest_unserved(started, ended)
    measured.probe_failures = sum(probe.failures() for probe in probes)
    time.sleep(1.5)  # the router flushes its access logs once a second
    measured.details["longest"] = host.longest_requests_since(offsets, journal_offset)
    measured.failures_logged = {
        f"{website} {method} {status}": count
        for (website, method, status), count in sorted(host.failures_logged_since(offsets).items())
    }
    if host_log.exists():
        with open(host_log, "rb") as log:
            log.seek(host_log_offset)
            lines = log.read().decode(errors="replace").splitlines()
        reasons = Counter(
            router_reason(line) for line in lines if re.search(r" (404|502|503) ", line)
        )
        measured.router_reasons = dict(reasons.most_common(8))
    if measured.error:
        raise OperationFailed(measured)
    return measured


def router_reason(line: str) -> str:
    """A router log line reduced to its kind of failure."""
    for pattern, reason in (
        (r"does not answer \(Cannot connect", "502: the app refused the connection (not running)"),
        (r"does not answer", "502: the app closed the connection or failed"),
        (r"writes to \S+ are held", "503: a write held longer than the router's wait limit"),
        (r"is moving and was not attached", "404: a domain detached longer than the wait limit"),
        (r"no website serves", "404: no website serves the domain"),
    ):
        if re.search(pattern, line):
            return reason
    return re.sub(r"\d+", "N", line)[-120:]


class OperationFailed(Exception):
    def __init__(self, measured: Measured):
        super().__init__(measured.error)
        self.measured = measured


def say(text: str) -> None:
    print(text, flush=True)


# The operations


def fab_operation(host: BenchHost, *args: str, staging: str, production: str | None):
    def run() -> dict:
        stdout = host.fab(*args, staging=staging, production=production)
        return {"fab_output": stdout, "event": host.last_release_event()}

    return run


def runtime(connection: LocalHost, directory: Path, *command: str, check: bool = True):
    """deploy.host.release_runtime with the release's own python and code (cwd: the release, so
    `-m` finds nothing of the bench's checkout first)."""
    python = directory / layout.ENV / "bin" / "python"
    argv = [python, "-m", "deploy.host.release_runtime", directory, *command]
    return connection.run(argv, cwd=directory, check=check)


def seed_sequence(host: BenchHost, new: str, old: str):
    """The seed guide's promotion, in its order, with the deploy/ building blocks. One change:
    the new release gets production's session secret (our promotion carries it forward too), so
    sign-ups with a session opened before the switch are not refused as expired forms, and the
    load sees only the sequence itself."""

    def run() -> dict:
        connection = LocalHost(str(host.root))
        api = HostingAPI(host.env["RANDOPONY_HOSTING_API"])
        api.login(HOSTING_USER, HOSTING_PASSWORD)
        ip = (api.list_ips() or ["127.0.0.1"])[0]
        new_dir, old_dir = host.release_dir(new), host.release_dir(old)
        new_name, old_name = (layout.webapp_name("randopony", r) for r in (new, old))
        steps: dict[str, float] = {}
        marks: dict[str, float] = {}

        def step(name: str, action) -> None:
            marks[name] = time.monotonic()
            action()
            steps[name] = round(time.monotonic() - marks[name], 3)

        def prepare() -> None:
            """Staging's databases and logs deleted, production.ini for staging.ini, bin/start
            and supervisord.conf reading it; production's session secret."""
            for name in (*layout.database_files("staging"), *layout.LOGS.values()):
                connection.remove(new_dir / name)
            ini = layout.ini_name("production")
            connection.symlink(f"{layout.SRC}/{ini}", new_dir / ini)
            connection.remove(new_dir / layout.ini_name("staging"))
            write_bin_scripts(connection, new_dir)
            info = read_json(connection, new_dir)
            conf = release_runtime.render_conf(
                new_dir, ini, int(info["port"]), new, read_release_env(connection, "production")
            )
            connection.write_text(new_dir / layout.SUPERVISORD_CONF, conf)
            credentials = (old_dir / layout.CREDENTIALS).read_text()
            connection.write_text(new_dir / layout.CREDENTIALS, credentials, mode=0o400)

        def detach() -> None:
            site = api.website(old_name)
            rest = [d for d in site.subdomains if d != DOMAIN]
            api.update_website(old_name, ip, False, rest, list(site.website_apps))

        def copy() -> None:
            for name in (DB, DB + "-wal", "celery.sqlite", "celery.sqlite-wal"):
                if (old_dir / name).exists():
                    subprocess.run(["cp", str(old_dir / name), str(new_dir / name)], check=True)

        def start() -> None:
            runtime(connection, new_dir, "start-supervisor")
            answer = runtime(connection, new_dir, "wait-up", "--timeout", "60", check=False)
            if answer.returncode != 0:
                raise RuntimeError(f"{new} does not come up: {answer.stdout}")

        try:
            step("stop_staging", lambda: runtime(connection, new_dir, "stop-supervisor"))
            step("prepare_release", prepare)
            step("stop_production", lambda: runtime(connection, old_dir, "stop-supervisor"))
            step("detach_domain", detach)
            step("copy_databases", copy)
            step(
                "attach_domain",
                lambda: api.update_website(new_name, ip, False, [DOMAIN], [(new_name, "/")]),
            )
            step("start_new_release", start)
        finally:
            connection.close()
        return {
            "steps": steps,
            "production_stopped_to_new_up": round(time.monotonic() - marks["stop_production"], 3),
        }

    return run


BENCH_MIGRATION = '''"""Bench: a column added.

Revision ID: 0099
Revises: {down}
"""

import sqlalchemy as sa
from alembic import op

revision = "0099"
down_revision = "{down}"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("brevets") as batch:
        batch.add_column(sa.Column("bench_note", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("brevets") as batch:
        batch.drop_column("bench_note")
'''


def code_head(checkout: Path) -> str:
    """The newest revision among the checkout's migrations (they are numbered)."""
    names = sorted(p.name for p in (checkout / "alembic" / "versions").glob("0*.py"))
    return names[-1].split("_", 1)[0]


# Reporting


def print_report(results: dict) -> None:
    post_every = results["post_every"]
    size = results["database_bytes"] / 2**20
    copy = results["copy"]
    print(f"\n## Database copy: production database on the host, {size:.0f} MiB, live app")
    print("| method | median s (runs) | speed vs cp |\n|---|---|---:|")
    for name, runs in copy["runs"].items():
        each = ", ".join(f"{x:.2f}" for x in runs)
        print(
            f"| {name} | {copy['median'][name]:.2f} ({each}) | {copy['speed_vs_cp'][name]:.2f}x |"
        )
    print(
        f"consistent_copy lock held (median): {copy['consistent_copy_lock_seconds']:.3f} s; "
        f"goal 0.8x of cp: {'met' if copy['speed_vs_cp']['consistent_copy'] >= 0.8 else 'NOT met'}"
    )
    print(f"\n## Under wrk load (-t2 -c16, one request in {post_every} a sign-up)")
    print(
        "| operation | s | requests | failed | longest request | p99 | writes held s "
        "| longest without a read / write | sign-ups 302 / stored |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---|---|")
    for m in results["runs"]:
        hold = f"{m['write_hold_seconds']:.2f}" if m["write_hold_seconds"] is not None else "-"
        print(
            f"| {m['name']} | {m['seconds']:.1f} | {m['requests']:,} | {m['failed']} "
            f"| {m['longest_request_ms'] / 1000:.2f} s | {m['p99_ms']:.0f} ms | {hold} "
            f"| {m['longest_without_read']:.2f} s / {m['longest_without_write']:.2f} s "
            f"| {m['signups_answered']} / {m['signups_stored']} |"
        )
    for m in results["runs"]:
        extra = []
        if m["error"]:
            extra.append(f"FAILED: {m['error']}")
        if m["socket_errors"] and any(m["socket_errors"].values()):
            extra.append(f"socket errors {m['socket_errors']}")
        if m["failures_logged"]:
            extra.append(f"router access logs: {m['failures_logged']}")
        if m["router_reasons"]:
            extra.append(f"router log: {m['router_reasons']}")
        if m["probe_failures"]:
            extra.append(f"probe failures {m['probe_failures']}")
        details = m["details"]
        steps = details.get("steps") or details.get("event", {}).get("steps")
        if "production_stopped_to_new_up" in details:
            extra.append(
                f"production stopped to the new release up: "
                f"{details['production_stopped_to_new_up']:.2f} s"
            )
        print(f"- {m['name']}: steps {steps}" + ("; " + "; ".join(extra) if extra else ""))
        longest = ", ".join(
            f"{r['seconds']:.2f} s {r['method']} {r['website']} {r['status']} "
            f"(began in {r['during']})"
            for r in details.get("longest", [])
        )
        print(f"  longest requests: {longest}")
    figures = []
    keys = ("promote", "rollback", "promote_m", "rollback_m", "seed", "idle")
    for m, key in zip(results["runs"], keys, strict=False):
        figures.append(f"{key}_longest_s={m['longest_request_ms'] / 1000:.2f}")
        if m["write_hold_seconds"] is not None:
            figures.append(f"{key}_hold_s={m['write_hold_seconds']:.3f}")
            over = m["longest_request_ms"] / 1000 - m["write_hold_seconds"]
            figures.append(f"{key}_longest_over_hold_s={over:.2f}")
        figures.append(f"{key}_failed={m['failed']}")
    print(f"RESULT size_mib={size:.0f} " + " ".join(figures))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mb", type=int, default=1024, help="production database size")
    parser.add_argument("--copy-rounds", type=int, default=3)
    parser.add_argument("--post-every", type=int, default=10, help="one request in N signs up")
    parser.add_argument(
        "--wait-limit", type=float, default=10.0, help="the router's wait limit (host default 10)"
    )
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()

    host = BenchHost(args.wait_limit)
    results: dict = {
        "size_mb": args.size_mb,
        "post_every": args.post_every,
        "wait_limit": args.wait_limit,
        "date": time.strftime("%Y-%m-%d"),
    }
    runs: list[Measured] = []
    failed: str | None = None
    try:
        run_all(host, args, results, runs)
    except OperationFailed as error:
        runs.append(error.measured)
        failed = f"{error.measured.name}: {error.measured.error}"
    except Exception as error:
        failed = f"{type(error).__name__}: {error}"
    finally:
        host.down()
    results["runs"] = [m.__dict__ for m in runs]
    for m in runs:
        if m.failed or m.error:
            print(f"\n--- wrk output, {m.name}:\n{m.output}")
    if "copy" in results and runs:
        print_report(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str) + "\n")
    if failed:
        print(f"\nFAILED: {failed}", file=sys.stderr)
        return 1
    return 0


def run_all(host: BenchHost, args: argparse.Namespace, results: dict, runs: list) -> None:
    for other in other_hosts(host.root):
        say(f"# WARNING: another local host runs on this machine; ports may clash: {other}")
    host.up()
    say(f"# host root {host.root}, router 127.0.0.1:{host.router_port}")
    started = time.monotonic()
    host.fab("init_staging", staging=R1, production=None)
    host.fab("promote_staging_to_production", "--yes", "--demo", staging=R1, production=None)
    check_ports(host, R1)
    say(f"# {R1} in production ({time.monotonic() - started:.1f} s)")
    database = host.release_dir(R1) / DB
    # Sign-ups ask the club's membership service; the load must not.
    conn = sqlite3.connect(database, timeout=30)
    with conn:
        conn.execute("DELETE FROM links WHERE key = 'membership_check_url'")
    conn.close()
    took = grow_database(database, args.size_mb)
    results["database_bytes"] = database.stat().st_size
    say(f"# production database: {database.stat().st_size / 2**20:.0f} MiB ({took:.1f} s)")
    results["copy"] = copy_against_cp(database, host.root, args.copy_rounds)
    say(f"# copy against cp: {results['copy']['median']}")
    host.fab("init_staging", staging=R2, production=R1)
    check_ports(host, R1, R2)
    site = discover(host)
    say(f"# {R2} on staging; load on {len(site.reads)} pages, sign-ups on {site.events}")

    m = under_load(
        host,
        site,
        f"fab promote_staging_to_production ({R2} over {R1})",
        "promote",
        fab_operation(host, "promote_staging_to_production", "--yes", staging=R2, production=R1),
        args.post_every,
    )
    m.write_hold_seconds = m.details["event"].get("write_hold_seconds")
    m.signups_stored = riders_like(host.release_dir(R2) / DB, "promote-t%")
    runs.append(m)
    check_ports(host, R2)
    say(f"# promote: {m.seconds:.1f} s, {m.failed} failed, hold {m.write_hold_seconds} s")

    m = under_load(
        host,
        site,
        f"fab rollback_production ({R1} back)",
        "rollback",
        fab_operation(host, "rollback_production", "--yes", staging=R2, production=R2),
        args.post_every,
    )
    m.write_hold_seconds = m.details["event"].get("write_hold_seconds")
    m.signups_stored = riders_like(host.release_dir(R1) / DB, "rollback-t%")
    runs.append(m)
    check_ports(host, R1)
    say(f"# rollback: {m.seconds:.1f} s, {m.failed} failed, hold {m.write_hold_seconds} s")

    # The same again with a small migration: a column added (and dropped by the rollback).
    migration = host.checkout / "alembic" / "versions" / "0099_bench_column.py"
    migration.write_text(BENCH_MIGRATION.format(down=code_head(host.checkout)))
    try:
        host.fab("init_staging", staging=R4, production=R1)
    finally:
        migration.unlink()  # the seed sequence's release below does not migrate
    check_ports(host, R1, R4)
    for name, kind, task, staging, production, lands in (
        (
            f"fab promote_staging_to_production ({R4} over {R1}, a column added)",
            "promote-m",
            ("promote_staging_to_production", "--yes"),
            R4,
            R1,
            R4,
        ),
        (
            f"fab rollback_production ({R1} back, the column dropped)",
            "rollback-m",
            ("rollback_production", "--yes"),
            R4,
            R4,
            R1,
        ),
    ):
        m = under_load(
            host,
            site,
            name,
            kind,
            fab_operation(host, *task, staging=staging, production=production),
            args.post_every,
        )
        m.write_hold_seconds = m.details["event"].get("write_hold_seconds")
        m.signups_stored = riders_like(host.release_dir(lands) / DB, f"{kind}-t%")
        runs.append(m)
        check_ports(host, lands)
        say(f"# {kind}: {m.seconds:.1f} s, {m.failed} failed, hold {m.write_hold_seconds} s")

    host.fab("init_staging", staging=R3, production=R1)
    check_ports(host, R1, R3)
    m = under_load(
        host,
        site,
        f"seed guide's sequence ({R3} over {R1})",
        "seed",
        seed_sequence(host, R3, R1),
        args.post_every,
    )
    m.signups_stored = riders_like(host.release_dir(R3) / DB, "seed-t%")
    runs.append(m)
    check_ports(host, R3)
    say(f"# seed sequence: {m.seconds:.1f} s, {m.failed} failed")
    answer = requests.get(host.url("/up"), headers={"Host": host.host_header}, timeout=30)
    say(f"# production after the seed sequence: {answer.json()}")

    # The baseline for the longest request: the same load for as long, with nothing happening.
    m = under_load(host, site, "no operation (the same load, 15 s)", "idle", idle, args.post_every)
    m.signups_stored = riders_like(host.release_dir(R3) / DB, "idle-t%")
    runs.append(m)
    say(f"# idle: longest request {m.longest_request_ms / 1000:.2f} s")


def idle() -> dict:
    time.sleep(15)
    return {}


if __name__ == "__main__":
    sys.exit(main())
