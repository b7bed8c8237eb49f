"""What the host remembers: which release plays which role, the history of releases, and a
journal of every step that changes the host, written before the step runs."""

from __future__ import annotations

import getpass
import json
import os
import socket
import sys
from contextlib import contextmanager
from datetime import UTC, datetime

from deploy.host import layout
from deploy.remote.hosts import Host, HostError


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def who() -> str:
    return f"{getpass.getuser()}@{socket.gethostname()}"


def read_roles(host: Host) -> dict[str, str | None]:
    text = host.read_text(layout.roles_file(host.root))
    roles = json.loads(text) if text else {}
    return {"staging": None, "production": None, "previous": None, **roles}


def write_roles(host: Host, roles: dict) -> None:
    host.write_text(layout.roles_file(host.root), json.dumps(roles, indent=2) + "\n")


def record_event(host: Host, event: str, **details) -> None:
    line = json.dumps({"time": now(), "event": event, "by": who(), **details})
    host.append_line(layout.releases_log(host.root), line)


def history(host: Host) -> list[dict]:
    text = host.read_text(layout.releases_log(host.root)) or ""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


class Journal:
    """One line per step boundary: a crash leaves a 'started' without its 'done', which says
    exactly where to pick up."""

    def __init__(self, host: Host, task: str, release: str):
        self.host, self.task, self.release = host, task, release

    def write(self, step: str, state: str, **details) -> None:
        line = json.dumps(
            {
                "time": now(),
                "task": self.task,
                "release": self.release,
                "step": step,
                "state": state,
                **details,
            }
        )
        self.host.append_line(layout.journal(self.host.root), line)

    @contextmanager
    def step(self, step: str):
        self.write(step, "started")
        try:
            yield
        except BaseException as error:
            self.write(step, "failed", error=f"{type(error).__name__}: {error}"[:2000])
            raise
        self.write(step, "done")


class LockHeld(HostError):
    pass


def lock_holder(host: Host) -> dict | None:
    lock = layout.deploy_dir(host.root) / "lock"
    if not host.exists(lock):
        return None
    holder = host.read_text(lock / "holder.json") or ""
    return json.loads(holder) if holder.strip() else {}


def clear_lock(host: Host) -> None:
    host.remove(layout.deploy_dir(host.root) / "lock")


def holder_alive(info: dict) -> bool | None:
    """Whether the process that took the lock still runs: known only when it was taken from this
    machine by this user (the lock names the process); None otherwise."""
    pid = info.get("pid")
    if not pid or info.get("by") != who():
        return None
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def host_lock(
    host: Host,
    purpose: str,
    release: str,
    reenter: bool = False,
    takes_over: tuple[str, str] | None = None,
    stale_ok: bool = False,
):
    """One release operation at a time per host. mkdir is atomic on every filesystem, so two
    maintainers racing for the lock cannot both get it. `reenter`: a resumed operation takes
    over the lock its interrupted run left, if it is the same operation on the same release;
    `takes_over` names another interrupted operation whose lock this one may take (a rollback
    undoing an interrupted promotion); `stale_ok`: the same operation may take the lock of a run
    of its own that died (a nightly job after a crash). Never while the holder is known to run."""
    lock = layout.deploy_dir(host.root) / "lock"
    host.mkdir(layout.deploy_dir(host.root))
    result = host.run(["mkdir", str(lock)], check=False)
    info = lock_holder(host) or {}
    held_by = (info.get("purpose"), info.get("release"))
    alive = holder_alive(info)
    allowed = (
        held_by == (purpose, release)
        and reenter
        or held_by == takes_over
        or stale_ok
        and info.get("purpose") == purpose
        and alive is False
    )
    if result.returncode != 0 and (not allowed or alive):
        still = f" (still running: process {info.get('pid')})" if alive else ""
        raise LockHeld(
            f"another release operation holds the host's lock: {info.get('purpose', '?')} of "
            f"{info.get('release', '?')} by {info.get('by', '?')} since "
            f"{info.get('since', '?')}{still}. "
            + (
                "Wait for it to finish."
                if alive
                else "If it died, `fab unlock` clears the lock after asking."
            )
        )
    host.write_text(
        lock / "holder.json",
        json.dumps(
            {
                "purpose": purpose,
                "release": release,
                "by": who(),
                "pid": os.getpid(),
                "since": now(),
            }
        ),
    )
    try:
        yield
    finally:
        host.remove(lock)


# Fault injection for the tests: kill -9 the running flow at a named step boundary. It fires only
# on a host the tests made (it has deploy/test-host), so a stray export can never kill a real
# promotion with writes held; set anywhere else, it is ignored, and said so.
CRASH_AFTER = "RANDOPONY_TEST_CRASH_AFTER_STEP"
# "raise": the boundary raises SimulatedKill instead, for tests that drive a flow in their own
# process (tests/unit/test_step_runner.py); kill -9 stays the default.
CRASH_MODE = "RANDOPONY_TEST_CRASH_MODE"
TEST_HOST_MARK = "test-host"
_warned: set[str] = set()


class SimulatedKill(BaseException):
    """The in-process stand-in for kill -9: a BaseException, so no flow's error handling
    catches it, as none can catch a kill."""


def is_test_host(host: Host) -> bool:
    return host.exists(layout.deploy_dir(host.root) / TEST_HOST_MARK)


def crash_point(host: Host, *names: str) -> None:
    """Called at each step boundary with the names that boundary answers to."""
    wanted = os.environ.get(CRASH_AFTER)
    if not wanted:
        return
    if not is_test_host(host):
        if wanted not in _warned:
            _warned.add(wanted)
            print(
                f"warning: {CRASH_AFTER}={wanted} is set, but {host.description} is not a test "
                "host: ignored (unset it)",
                file=sys.stderr,
                flush=True,
            )
        return
    if wanted in names:
        if os.environ.get(CRASH_MODE) == "raise":
            raise SimulatedKill(wanted)
        print(f"TEST CRASH: killed after {wanted} ({CRASH_AFTER})", file=sys.stderr, flush=True)
        os._exit(9)
