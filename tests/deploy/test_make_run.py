"""`make run` and `make stop` themselves, end to end, as a new user runs them in a fresh checkout:
the virtualenv is made, the local host starts, the checkout goes live as production (with demo
events) and as staging beside it, and production answers through the router; a rider's sign-up
is mailed into the host's mail folder; `make stop` stops every process it started.

The host runs on free ports and under a root of the test's own (RANDOPONY_HOST_ROOT,
RANDOPONY_PANEL_PORT, RANDOPONY_ROUTER_PORT, RANDOPONY_MAIL_PORT, RANDOPONY_APP_PORTS), never on
the fixed ports a developer's own `make run` host may be using."""

import os
import re
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

from deploy.host import service, supervisor
from tests.conftest import free_port, wait_until
from tests.deploy.conftest import copy_checkout, stop_release_supervisors
from tests.deploy.riders import STAGING, Rider
from tests.ports import app_ports


def answers(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def make(checkout: Path, target: str, env: dict) -> subprocess.CompletedProcess:
    done = subprocess.run(
        ["make", target],
        cwd=checkout,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, f"make {target}:\n{done.stdout[-5000:]}\n{done.stderr[-5000:]}"
    return done


def supervisord_pids(root: Path) -> dict[str, int]:
    """Every supervisord the host started (its own and each release's), by its pid file."""
    return {
        str(path.relative_to(root)): int(path.read_text())
        for path in [root / "supervisor/supervisord.pid", *root.glob("webapps/*/supervisord.pid")]
        if path.exists()
    }


def processes_under(folder: Path) -> list[str]:
    """Every process still running a program or file from under the folder (the checkout's
    virtualenv, a release's), by its command line."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue  # gone meanwhile, or not ours to read
        if str(folder) in command:
            found.append(f"{proc.name}: {command}")
    return found


class Host:
    """What Rider needs to browse the host `make run` started."""

    def __init__(self, router_port):
        self.router_port = router_port

    def url(self, path="/"):
        return f"http://127.0.0.1:{self.router_port}{path}"


@pytest.fixture
def fresh_checkout():
    """A copy of the checkout as a new user has it, and a host root of its own; whatever it
    started is stopped at the end, also when the test failed half way."""
    # Short paths: supervisord's unix sockets live under the host root (108-byte limit).
    base = Path(tempfile.mkdtemp(prefix="rp-run-"))
    checkout = copy_checkout(base / "src")
    root = base / "host"
    try:
        yield checkout, root
    finally:
        if root.exists():
            stop_release_supervisors(root)
            service.host_down(root)
        shutil.rmtree(base, ignore_errors=True)


def test_make_run_then_make_stop(fresh_checkout):
    checkout, root = fresh_checkout
    panel_port, router_port, mail_port = free_port(), free_port(), free_port()
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("RANDOPONY_") and name != "VIRTUAL_ENV"
    }
    env.update(
        RANDOPONY_HOST_ROOT=str(root),
        RANDOPONY_PANEL_PORT=str(panel_port),
        RANDOPONY_ROUTER_PORT=str(router_port),
        RANDOPONY_MAIL_PORT=str(mail_port),
        RANDOPONY_APP_PORTS=app_ports(),
    )

    done = make(checkout, "run", env)
    said = done.stdout
    assert (checkout / ".venv/bin/python").exists()  # made by `make run` itself
    assert f"RandoPony production is live: http://randopony.localhost:{router_port}/" in said
    assert f"staging beside it: http://staging.randopony.localhost:{router_port}/" in said
    assert str(root / "mail") in said

    host = Host(router_port)
    rider = Rider(host)
    assert rider.get("/up").json()["release"] == "2026r1"
    assert Rider(host, STAGING).get("/up").json()["release"] == "2026r2"
    home = rider.get("/")
    assert home.status_code == 200 and "RandoPony" in home.text
    event = rider.event()  # a demo brevet on production's /brevets/
    assert rider.get(event).status_code == 200
    assert rider.sign_up(event, "new.user@example.org").status_code == 302
    mail = root / "mail"
    wait_until(
        lambda: any(
            "new.user@example.org" in p.read_text(errors="replace") for p in mail.glob("*.eml")
        ),
        "the sign-up's confirmation in the host's mail folder",
    )
    assert answers(panel_port) and answers(mail_port)

    running = supervisord_pids(root)
    assert {"supervisor/supervisord.pid", "webapps/randopony2026r1/supervisord.pid"} <= set(running)
    assert all(supervisor.pid_alive(pid) for pid in running.values())

    stopped = make(checkout, "stop", env)
    assert re.search(r"stopping randopony2026r1: stopped", stopped.stdout), stopped.stdout
    assert re.search(r"stopping randopony2026r2: stopped", stopped.stdout), stopped.stdout
    for port in (router_port, panel_port, mail_port):
        assert not answers(port), port
    for name, pid in running.items():
        assert not supervisor.pid_alive(pid), name
    for sock in [root / "supervisor/supervisor.sock", *root.glob("webapps/*/supervisor.sock")]:
        assert not supervisor.answers(sock), sock
    assert processes_under(checkout.parent) == []
