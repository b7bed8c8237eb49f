"""host_up / host_status / host_down run the host under its own supervisord."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import requests

from deploy.host import service
from deploy.remote.panel_client import HostingAPI
from tests.host.conftest import CHECKOUT, PASSWORD, USERNAME, free_port, set_password

FAB = str(Path(sys.executable).parent / "fab")


@pytest.fixture
def root():
    # Short: supervisord's unix socket lives under the root (108 bytes at most), and pytest's
    # tmp_path is longer under a pytest-xdist worker.
    base = Path(tempfile.mkdtemp(prefix="rp-svc-"))
    root = base / "host"
    yield root
    # Whatever a test did, leave no supervisord behind.
    service.host_down(root)
    shutil.rmtree(base, ignore_errors=True)


def test_host_up_status_down(root):
    assert set_password(root, USERNAME, PASSWORD).returncode == 0
    panel_port, router_port = free_port(), free_port()

    status = service.host_up(root, panel_port=panel_port, router_port=router_port)
    assert status.running and status.supervisord
    assert status.panel_url == f"http://127.0.0.1:{panel_port}/"
    assert (root / "supervisor" / "supervisord.conf").exists()

    api = HostingAPI(status.panel_url)
    api.login(USERNAME, PASSWORD)
    api.create_app("randopony2026r1")
    answer = requests.get(status.router_url, headers={"Host": "nosuch.localhost"}, timeout=5)
    assert answer.status_code == 404

    # A crash: supervisord starts the host again, with the same state.
    os.kill(status.pid, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        again = service.host_status(root)
        if again.running and again.pid != status.pid:
            break
        time.sleep(0.2)
    assert again.running and again.pid != status.pid
    assert [app.name for app in api.list_apps()] == ["randopony2026r1"]

    # host_up on a running host keeps it as it is.
    assert service.host_up(root, panel_port=panel_port, router_port=router_port).pid == again.pid

    stopped = service.host_down(root)
    assert not stopped.running and not stopped.supervisord
    assert stopped.state == "NOT STARTED"
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", router_port), timeout=1)
    assert service.host_down(root) == stopped


def test_host_up_refuses_a_port_in_use_and_starts_nothing(root):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        with pytest.raises(service.HostServiceError, match=f"127.0.0.1:{taken} is already in use"):
            service.host_up(root, panel_port=free_port(), router_port=taken)
    assert not service.host_status(root).supervisord


def test_fab_tasks_call_into_deploy(root):
    listed = subprocess.run(
        [FAB, "--list"], cwd=CHECKOUT, capture_output=True, text=True, check=True
    )
    for name in ("host_up", "host_down", "host_status"):
        assert name in listed.stdout
    status = subprocess.run(
        [FAB, "host_status", "--root", str(root)],
        cwd=CHECKOUT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert status.returncode == 3
    assert "NOT STARTED" in status.stdout


def test_host_up_restarts_a_host_that_runs_older_code(root, monkeypatch):
    """The host runs the checkout's deploy/ code: after a pull, host_up (make run) restarts it,
    or a fixed router would never be in service."""
    assert set_password(root, USERNAME, PASSWORD).returncode == 0
    ports = dict(panel_port=free_port(), router_port=free_port())
    first = service.host_up(root, **ports)
    assert service.host_up(root, **ports).pid == first.pid  # same code: kept
    monkeypatch.setattr(service, "code_fingerprint", lambda: "newer-code")
    again = service.host_up(root, **ports)
    assert again.running and again.pid != first.pid


def test_host_up_passes_the_trusted_front_ends_to_the_router(root):
    with pytest.raises(service.HostServiceError, match="not an IP address"):
        service.host_up(root, free_port(), free_port(), trusted_front_ends=("proxy; rm",))
    assert not service.host_status(root).supervisord and not root.exists()

    status = service.host_up(root, free_port(), free_port(), trusted_front_ends=("127.0.0.1",))
    conf = (root / "supervisor" / "supervisord.conf").read_text()
    assert "--trusted-front-end 127.0.0.1" in conf
    assert service.read_config(root).trusted_front_ends == ("127.0.0.1",)
    assert status.running
