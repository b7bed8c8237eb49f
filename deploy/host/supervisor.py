"""supervisord, controlled through its XML-RPC interface on a unix socket: start it, start and
stop its programs (waiting until they are really up or gone), shut it down, ask what runs."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import xmlrpc.client
from dataclasses import dataclass
from pathlib import Path

from supervisor.xmlrpc import Faults, SupervisorTransport

# sockaddr_un.sun_path holds 108 bytes on Linux, including the final NUL.
MAX_SOCKET_PATH = 107


class SupervisorError(Exception):
    pass


@dataclass(frozen=True)
class Program:
    name: str
    state: str
    pid: int | None
    description: str
    group: str = ""


def conf_value(text) -> str:
    """supervisord expands %(name)s in its values: escape our own percent signs."""
    return str(text).replace("%", "%%")


def client(socket_path: Path):
    if len(str(socket_path)) > MAX_SOCKET_PATH:
        raise SupervisorError(f"{socket_path} is too long for a unix socket; use a shorter root")
    transport = SupervisorTransport(None, None, f"unix://{socket_path}")
    return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport).supervisor


def answers(socket_path: Path) -> bool:
    if not socket_path.exists():
        return False
    try:
        return client(socket_path).getState()["statename"] == "RUNNING"
    except (OSError, xmlrpc.client.Error):
        return False


def wait(ready, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        time.sleep(0.1)
    raise SupervisorError(f"gave up after {timeout:.0f} s waiting for {what}")


# What a supervisord and its programs inherit from whoever starts them; their own settings
# come from their config's environment= lines.
INHERITED = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "USER", "LOGNAME", "TMPDIR")


def plain_environment() -> dict[str, str]:
    """The environment of a supervisord: nothing of the maintainer's session (the panel
    password, the wrangler password, tokens) reaches the apps, workers and host processes."""
    environment = {name: os.environ[name] for name in INHERITED if name in os.environ}
    environment.setdefault("PATH", "/usr/bin:/bin")
    environment.setdefault("LANG", "C.UTF-8")
    return environment


def start(conf_path: Path, socket_path: Path, timeout: float = 30) -> bool:
    """Start supervisord with this config unless it already runs; returns whether it started."""
    if answers(socket_path):
        return False
    socket_path.unlink(missing_ok=True)
    started = subprocess.run(
        [sys.executable, "-m", "supervisor.supervisord", "-c", str(conf_path)],
        capture_output=True,
        text=True,
        check=False,
        env=plain_environment(),
    )
    if started.returncode != 0:
        raise SupervisorError(
            f"supervisord did not start: {(started.stderr or started.stdout).strip()}"
        )
    wait(lambda: answers(socket_path), timeout, "supervisord to answer")
    return True


def shutdown(socket_path: Path, timeout: float = 60) -> bool:
    """Stop every program (each gets its stopwaitsecs), then supervisord; wait until it is gone.
    Returns whether there was anything to stop."""
    if not answers(socket_path):
        return False
    supervisor = client(socket_path)
    pid = supervisor.getPID()
    supervisor.stopAllProcesses(True)
    supervisor.shutdown()
    wait(lambda: not pid_alive(pid), timeout, f"supervisord (pid {pid}) to exit")
    return True


def start_program(socket_path: Path, name: str) -> bool:
    """Start a program (or every process of a group, "group:*") and wait until supervisord
    counts it as running; False if it was."""
    try:
        result = client(socket_path).startProcess(name, True)
    except xmlrpc.client.Fault as fault:
        if fault.faultCode == Faults.ALREADY_STARTED:
            return False
        raise SupervisorError(f"{name} did not start: {fault.faultString}") from None
    return _group_result(result, name, "start")


def stop_program(socket_path: Path, name: str) -> bool:
    """Stop a program (or a group, "group:*") and wait until its processes are gone; False if
    it was not running."""
    if not answers(socket_path):
        return False
    try:
        result = client(socket_path).stopProcess(name, True)
    except xmlrpc.client.Fault as fault:
        if fault.faultCode == Faults.NOT_RUNNING:
            return False
        raise SupervisorError(f"{name} did not stop: {fault.faultString}") from None
    return _group_result(result, name, "stop")


def _group_result(result, name: str, verb: str) -> bool:
    """A group answers with one status per process it acted on (none: nothing to do)."""
    if not isinstance(result, list):
        return True
    failed = [r for r in result if r.get("status") != Faults.SUCCESS]
    if failed:
        said = "; ".join(f"{r.get('name')}: {r.get('description')}" for r in failed)
        raise SupervisorError(f"{name} did not {verb}: {said}")
    return bool(result)


def programs(socket_path: Path) -> list[Program]:
    if not answers(socket_path):
        return []
    return [
        Program(
            info["name"],
            info["statename"],
            info["pid"] or None,
            info["description"],
            info["group"],
        )
        for info in client(socket_path).getAllProcessInfo()
    ]


def pid_alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status
