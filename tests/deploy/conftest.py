"""Fixtures for the deploy tests: a real local host (panel and router under supervisord), a
copy of the checkout to deploy, an SMTP server, and `fab` run as a maintainer runs it. The SSH
server lives in tests/sshd.py so other suites can use it too."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from deploy.host import service, supervisor
from tests.conftest import ROOT, free_port
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

    def tree(self) -> dict[str, tuple]:
        """Every file the release machinery writes under the host root, with its size and time:
        to show a refused command changed nothing. Logs, sockets, the panel's state, and the
        databases, rider lists and bytecode caches of running releases change by themselves and
        are left out."""
        running = (".log", ".sock", ".sqlite", ".sqlite-wal", ".sqlite-shm")
        found = {}
        for path in sorted(self.root.rglob("*")):
            made_by_releases = {"panel", "rider_lists", "__pycache__"} & set(path.parts)
            if path.is_file() and not path.name.endswith(running) and not made_by_releases:
                stat = path.stat()
                found[str(path.relative_to(self.root))] = (stat.st_size, stat.st_mtime_ns)
        return found


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
