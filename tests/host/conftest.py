"""Real processes for the host's tests: the host (panel + router) and tiny waitress apps.

Most tests share one host per module (`shared_host`, its first account `shared_api`) and keep
out of each other's way by names of their own (`names`: apps, websites, domains) and, where what
they check is an account's whole view or they change the account, an account of their own
(`own_api`). A test that needs other `serve` arguments (@pytest.mark.host_args), stops or
restarts the host, or changes what the whole host does (a client's login throttle, an adopted
store) takes a host of its own (`host`).
"""

from __future__ import annotations

import itertools
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from deploy.host.server import HostSettings, open_store
from deploy.remote.panel_client import HostingAPI
from tests.ports import app_ports

HERE = Path(__file__).resolve().parent
CHECKOUT = HERE.parent.parent
USERNAME = "pony"
PASSWORD = "correct horse battery"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, log: Path, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode}:\n{log.read_text()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing answered on port {port} within {timeout} s:\n{log.read_text()}")


def stop_process(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def set_password(root: Path, username: str, password: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "deploy.host.server", "set-password", "--root", str(root), username],
        input=password + "\n",
        capture_output=True,
        text=True,
        cwd=CHECKOUT,
        check=False,
    )


@dataclass
class Host:
    """The host process (panel and router) on free loopback ports."""

    root: Path
    panel_port: int
    router_port: int
    extra_args: tuple[str, ...] = ()
    process: subprocess.Popen | None = None
    app_ports: str = field(default_factory=app_ports)

    @property
    def panel_url(self) -> str:
        return f"http://127.0.0.1:{self.panel_port}/"

    @property
    def router_url(self) -> str:
        return f"http://127.0.0.1:{self.router_port}"

    @property
    def log(self) -> Path:
        return self.root / "host-test.log"

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        command = [
            sys.executable,
            "-m",
            "deploy.host.server",
            "serve",
            "--root",
            str(self.root),
            "--panel",
            f"127.0.0.1:{self.panel_port}",
            "--router",
            f"127.0.0.1:{self.router_port}",
            # A stopped app is answered 502 after this long (10 s on a real host).
            *([] if "--retry-window" in self.extra_args else ["--retry-window", "2"]),
            # Apps' ports from this worker's band: hosts of tests run side by side must not
            # hand out the same port (tests/ports.py).
            "--app-ports",
            self.app_ports,
            *self.extra_args,
        ]
        with open(self.log, "a") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, cwd=CHECKOUT
            )
        try:
            wait_for_port(self.panel_port, self.process, self.log)
            wait_for_port(self.router_port, self.process, self.log)
        except BaseException:
            self.stop()  # a host that never answered is not left running
            raise

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)

    def restart(self) -> None:
        self.stop()
        self.start()

    def api(self, username: str = USERNAME, password: str = PASSWORD) -> HostingAPI:
        api = HostingAPI(self.panel_url)
        api.login(username, password)
        return api

    def add_account(self, username: str, password: str = PASSWORD) -> HostingAPI:
        """An account of its own on the running host (or a new password), logged in."""
        # In-process like make_host: the store is made to be opened while the host runs.
        store = open_store(HostSettings(root=self.root))
        try:
            store.set_password(username, password)
        finally:
            store.close()
        return self.api(username, password)


_prefixes = itertools.count(1)


@dataclass(frozen=True)
class Names:
    """Names that no other test on a shared host uses: apps, websites and accounts start with
    the prefix, domains sit below a label of it. `Names.fresh()` gives a new prefix."""

    prefix: str

    @classmethod
    def fresh(cls) -> Names:
        return cls(f"t{next(_prefixes)}")

    def __call__(self, name: str) -> str:
        """An app's, website's or account's name: "production" -> "t7_production"."""
        return f"{self.prefix}_{name}"

    def domain(self, name: str = "randopony") -> str:
        """A domain: "randopony" -> "randopony.t7.localhost"."""
        return f"{name}.{self.prefix}.localhost"


def make_host(root: Path, *extra_args: str) -> Host:
    # In-process to keep tests quick; test_workflow covers the set-password command.
    store = open_store(HostSettings(root=root))
    store.set_password(USERNAME, PASSWORD)
    store.close()
    return Host(root, free_port(), free_port(), tuple(extra_args))


# What every test host runs with, unless a test's host_args say otherwise.
HOST_ARGS = ("--wait-limit", "5")


@pytest.fixture
def host(tmp_path, request):
    """A host of the test's own; @pytest.mark.host_args(...) adds arguments to `serve`."""
    marker = request.node.get_closest_marker("host_args")
    running = make_host(tmp_path / "host", *HOST_ARGS, *(marker.args if marker else ()))
    try:
        running.start()
        yield running
    finally:
        running.stop()


@pytest.fixture
def api(host) -> HostingAPI:
    return host.api()


@pytest.fixture(scope="module")
def shared_host(tmp_path_factory):
    """One host for the module's tests, each with names of its own (`names`)."""
    running = make_host(tmp_path_factory.mktemp("shared") / "host", *HOST_ARGS)
    try:
        running.start()
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def shared_api(shared_host) -> HostingAPI:
    """A client of the shared host's first account, for the tests whose own names are enough:
    it sees what the module's other tests made too."""
    return shared_host.api()


@pytest.fixture
def names() -> Names:
    """The test's own names on the shared host."""
    return Names.fresh()


@pytest.fixture
def own_api(shared_host, names) -> HostingAPI:
    """A client logged in to an account of the test's own on the shared host, for a test that
    checks an account's whole view or changes the account: it sees only what the test made."""
    return shared_host.add_account(names("pony"))


@pytest.fixture
def start_app(tmp_path):
    """Start the sample waitress app on a port; every app started is stopped afterwards."""
    started = []

    def start(name: str, port: int) -> subprocess.Popen:
        log = tmp_path / f"app-{name}-{port}.log"
        with open(log, "a") as output:
            process = subprocess.Popen(
                [sys.executable, str(HERE / "sample_app.py"), name, str(port)],
                stdout=output,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        started.append(process)
        wait_for_port(port, process, log)
        return process

    start.processes = started
    yield start
    for process in started:
        stop_process(process)
