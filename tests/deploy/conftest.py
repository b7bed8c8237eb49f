"""Fixtures for the deploy tests: a real local host (panel and router under supervisord), a
copy of the checkout to deploy, an SMTP server, and `fab` run as a maintainer runs it. The SSH
server lives in tests/sshd.py so other suites can use it too."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import sqlite3
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from deploy.host import service, supervisor
from tests.conftest import ROOT, free_port, wait_until
from tests.integration.conftest import Mailbox
from tests.ports import app_ports
from tests.sshd import ssh_server  # noqa: F401

BIN = Path(sys.executable).parent
HOSTING_PASSWORD = "hosting-password-1"
WRANGLER_PASSWORD = "staging-wrangler-1"


@dataclass
class LocalHostFixture:
    root: Path
    panel_port: int
    router_port: int
    checkout: Path
    env: dict = field(default_factory=dict)

    def fab(self, *args: str, check: bool = True, **extra_env) -> subprocess.CompletedProcess:
        """`fab` from the project checkout, as a maintainer runs it, against this host."""
        done = subprocess.run(
            [str(BIN / "fab"), *args],
            cwd=ROOT,
            env={**self.env, **extra_env},
            capture_output=True,
            text=True,
            timeout=300,
            stdin=subprocess.DEVNULL,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"fab {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
        return done

    def restart(self) -> None:
        """The machine restarted: every release's supervisord and the host are gone. Then the
        host starts again as `make run` or a @reboot line starts it."""
        stop_release_supervisors(self.root)
        service.host_down(self.root)
        config = service.read_config(self.root)
        service.host_up(
            self.root,
            self.panel_port,
            self.router_port,
            wait_limit=config.wait_limit,
            app_ports=config.app_ports,
        )

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.router_port}{path}"

    def tree(self) -> dict[str, object]:
        """What the host holds, to show that a refused command changed nothing: every file and
        symbolic link under the host root (a file by its mode, size and time, a link by where
        it points, a directory by its mode), with the host's own records among them (roles,
        journal, history, lock, promotion and sync state, env files); every SQLite database by
        its rows (a digest of each table), not its bytes, which SQLite rewrites without a row
        changing (a checkpoint of its WAL); the panel's accounts, apps, websites and domains as
        rows; the rider lists; and which programs each release's supervisord runs.

        Left out only what changes by itself while nothing is done: the processes' own logs
        (pyramid.log, celery.log, supervisord.log and their rotations, logs/), sockets,
        bytecode caches, and SQLite's -wal, -shm and -journal files (the rows they hold are in
        their database's digest).

        A release's worker works through its queue by itself (mail, rider lists), so the
        snapshot waits first until every running worker has nothing queued or in hand."""
        wait_until(lambda: not self.busy_workers(), "the releases' workers to finish", 300)
        found: dict[str, object] = {}
        for directory, folders, files in os.walk(self.root):
            folders[:] = sorted(f for f in folders if f != "__pycache__")
            here = Path(directory)
            if here == self.root / "logs":
                folders[:] = []
                continue
            for name in sorted(folders + files):
                path = here / name
                key = str(path.relative_to(self.root))
                if path.is_symlink():
                    found[key] = ("link", os.readlink(path))
                elif path.is_dir():
                    found[key] = ("dir", stat.S_IMODE(path.lstat().st_mode))
                elif _changes_by_itself(path):
                    continue
                elif path == self.root / "panel" / "panel.sqlite":
                    found.update(panel_rows(path))
                elif path.name.endswith(".sqlite"):
                    found[key] = database_rows(path)
                elif path.is_file():
                    info = path.lstat()
                    found[key] = (stat.S_IMODE(info.st_mode), info.st_size, info.st_mtime_ns)
        for sock in sorted((self.root / "webapps").glob("*/supervisor.sock")):
            states = {p.name: p.state for p in supervisor.programs(sock)}
            found[f"running:{sock.parent.name}"] = states or "supervisord down"
        return found

    def busy_workers(self) -> list[str]:
        """The releases whose running worker has a task queued or in hand."""
        busy = []
        for sock in sorted((self.root / "webapps").glob("*/supervisor.sock")):
            states = {p.name: p.state for p in supervisor.programs(sock)}
            if states.get("celery") == "RUNNING" and worker_has_work(sock.parent):
                busy.append(sock.parent.name)
        return busy


# Each task the worker takes, and what became of it, as celery logs it (--loglevel=INFO).
TASK_LOGGED = re.compile(r"Task [\w.]+\[([0-9a-f-]+)\] (\w+)")


def worker_has_work(release_dir: Path) -> bool:
    """A message still waiting in the release's queue, or a task its worker received and has
    not finished (a task to retry is received again)."""
    queue = release_dir / "celery.sqlite"
    if queue.exists():
        db = sqlite3.connect(f"file:{queue}?mode=ro", uri=True, timeout=30)
        try:
            waiting = db.execute("SELECT count(*) FROM kombu_message WHERE visible").fetchone()
        except sqlite3.OperationalError:  # no table yet: nothing was ever queued
            waiting = (0,)
        finally:
            db.close()
        if waiting[0]:
            return True
    log = release_dir / "celery.log"
    text = log.read_text(errors="replace") if log.exists() else ""
    # Since the worker last started (its banner): a task an earlier run had in hand when it
    # stopped went back to the queue, or forward with it to another release.
    since_start = text[text.rfind(".> app:") :]
    if " ready." not in since_start:
        return True  # still starting: it creates its queue's tables when it connects
    last = dict(TASK_LOGGED.findall(since_start))
    return any(what in ("received", "retry") for what in last.values())


# Written by the processes as they run: never a sign of what a command did.
PROCESS_LOGS = re.compile(r"^(pyramid|celery|supervisord)\.log(\.\d+)?$")
SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")


def _changes_by_itself(path: Path) -> bool:
    return (
        path.is_socket()
        or bool(PROCESS_LOGS.match(path.name))
        or path.name.endswith(SQLITE_SIDE_FILES)
    )


def panel_rows(path: Path) -> dict[str, list]:
    """The panel's accounts (by name), apps, websites and domains, row by row."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        return {
            f"panel:{table}": sorted(db.execute(f"SELECT {columns} FROM {table}").fetchall())
            for table, columns in (
                ("accounts", "username"),
                ("apps", "name, type, autostart, extra_info, open_port, port, owner"),
                ("websites", "name, ip, https, subdomains, website_apps, owner"),
                ("account_domains", "id, name, owner"),
                ("account_subdomains", "domain_id, name"),
            )
        }
    finally:
        db.close()


def database_rows(path: Path) -> dict[str, tuple[int, str]]:
    """Each table of a SQLite database: its number of rows and a digest of them, read through
    a read-only connection (it never checkpoints or writes the file)."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        tables = [
            row[0]
            for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY 1")
        ]
        rows = {}
        for table in tables:
            content = sorted(repr(row) for row in db.execute(f'SELECT * FROM "{table}"'))
            digest = hashlib.sha256("\n".join(content).encode()).hexdigest()[:16]
            rows[table] = (len(content), digest)
        return rows
    finally:
        db.close()


def copy_checkout(destination: Path) -> Path:
    """The project's files as a developer's checkout has them (no venv, no local host)."""
    subprocess.run(
        [
            "rsync",
            "-a",
            "--exclude=.venv",
            "--exclude=var",
            "--exclude=.git",
            "--exclude=__pycache__",
            f"{ROOT}/",
            f"{destination}/",
        ],
        check=True,
    )
    return destination


def stop_release_supervisors(root: Path) -> None:
    for sock in (root / "webapps").glob("*/supervisor.sock"):
        started = time.monotonic()
        try:
            supervisor.shutdown(sock, timeout=90)
        except supervisor.SupervisorError:
            pass
        if time.monotonic() - started > 15:  # say why, for whoever reads a slow run
            for log in ("supervisord.log", "celery.log"):
                text = (sock.parent / log).read_text(errors="replace")
                print(f"--- slow stop of {sock.parent.name}: end of {log}\n{text[-3000:]}")


@pytest.fixture(scope="module")
def mailbox():
    box = Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=free_port())
    controller.start()
    box.port = controller.port
    try:
        yield box
    finally:
        controller.stop()


@pytest.fixture(scope="module")
def local_host(mailbox):
    """A host root with its panel account, running panel and router, and the site's releases'
    mail going to the test's SMTP server. Everything it starts is stopped at the end."""
    # Short paths: supervisord's unix sockets live under the root (108-byte limit).
    root = Path(tempfile.mkdtemp(prefix="rp-host-"))
    checkout = copy_checkout(Path(tempfile.mkdtemp(prefix="rp-checkout-")))
    panel_port, router_port = free_port(), free_port()
    subprocess.run(
        [str(BIN / "randopony-host"), "set-password", "--root", str(root), "randopony"],
        input=HOSTING_PASSWORD + "\n",
        text=True,
        check=True,
        capture_output=True,
    )
    (root / "deploy").mkdir()
    # A test host: the step crash hook (RANDOPONY_TEST_CRASH_AFTER_STEP) works here only.
    (root / "deploy" / "test-host").write_text("made by the deploy tests\n")
    (root / "deploy" / "release.env").write_text(
        f"RANDOPONY_SMTP_HOST=127.0.0.1\nRANDOPONY_SMTP_PORT={mailbox.port}\n"
    )
    env = dict(
        os.environ,
        RANDOPONY_HOST_ROOT=str(root),
        RANDOPONY_HOSTING_API=f"http://127.0.0.1:{panel_port}/",
        RANDOPONY_HOSTING_PASSWORD=HOSTING_PASSWORD,
        RANDOPONY_WRANGLER_PASSWORD=WRANGLER_PASSWORD,
        RANDOPONY_CHECKOUT=str(checkout),
        # A new host: the fabfile's values as they stand before the first release.
        RANDOPONY_STAGING_RELEASE="2026r1",
        RANDOPONY_PRODUCTION_RELEASE="",
    )
    try:
        # Held writes may wait 30 s here (10 s by default): a loaded CI machine must not turn
        # a slow promotion into failed requests that a real host would not see.
        # Apps get ports of this host's own: another host on the machine (a developer's, a
        # benchmark's) must not hand out the same ones.
        service.host_up(root, panel_port, router_port, wait_limit=30, app_ports=app_ports())
        yield LocalHostFixture(root, panel_port, router_port, checkout, env)
    finally:
        stop_release_supervisors(root)
        service.host_down(root)
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(checkout, ignore_errors=True)
