"""The host's lock: one release operation at a time, and never taken from a holder that runs."""

import json
import subprocess

import pytest

from deploy.remote import records
from deploy.remote.hosts import LocalHost


@pytest.fixture
def host(tmp_path):
    return LocalHost(tmp_path)


def hold(host, purpose, release, **holder):
    lock = host.root / "deploy" / "lock"
    host.mkdir(lock)
    host.write_text(
        lock / "holder.json",
        json.dumps({"purpose": purpose, "release": release, "since": "then", **holder}),
    )


def _finished() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_the_lock_is_taken_and_given_back(host):
    with records.host_lock(host, "promote", "2026r2"):
        holder = records.lock_holder(host)
        assert holder["purpose"] == "promote" and holder["pid"] > 0
        with pytest.raises(records.LockHeld, match="promote of 2026r2"):
            with records.host_lock(host, "sync_staging", "2026r3"):
                pass
    assert records.lock_holder(host) is None


def test_a_resume_never_takes_the_lock_of_a_run_that_still_runs(host):
    running = subprocess.Popen(["sleep", "30"])
    try:
        hold(host, "promote", "2026r2", by=records.who(), pid=running.pid)
        with pytest.raises(records.LockHeld, match=f"still running: process {running.pid}"):
            with records.host_lock(host, "promote", "2026r2", reenter=True):
                pass
        assert records.lock_holder(host)["pid"] == running.pid
    finally:
        running.kill()
        running.wait()
    with records.host_lock(host, "promote", "2026r2", reenter=True):
        assert records.lock_holder(host)["pid"] != running.pid


def test_a_rollback_takes_over_a_promotion_that_died_never_one_that_runs(host):
    running = subprocess.Popen(["sleep", "infinity"])
    try:
        hold(host, "promote", "2026r2", by=records.who(), pid=running.pid)
        with pytest.raises(records.LockHeld, match="Wait for it to finish"):
            with records.host_lock(host, "rollback", "2026r2", takes_over=("promote", "2026r2")):
                pass
        assert records.lock_holder(host)["pid"] == running.pid
    finally:
        running.kill()
        running.wait()
    with records.host_lock(host, "rollback", "2026r2", takes_over=("promote", "2026r2")):
        assert records.lock_holder(host)["purpose"] == "rollback"
    assert records.lock_holder(host) is None


def test_a_nightly_job_takes_over_its_own_dead_run_only(host):
    hold(host, "sync_staging", "2026r2", by=records.who(), pid=_finished())
    with pytest.raises(records.LockHeld):
        with records.host_lock(host, "promote", "2026r2", stale_ok=True):
            pass
    with records.host_lock(host, "sync_staging", "2026r2", stale_ok=True):
        pass
    assert records.lock_holder(host) is None


def test_a_holder_on_another_machine_is_never_judged_dead(host):
    hold(host, "sync_staging", "2026r2", by="ada@pony", pid=_finished())
    with pytest.raises(records.LockHeld, match="`fab unlock`"):
        with records.host_lock(host, "sync_staging", "2026r2", stale_ok=True):
            pass


def fab_unlock(root):
    import os
    import sys
    from pathlib import Path

    from tests.conftest import ROOT

    return subprocess.run(
        [str(Path(sys.executable).parent / "fab"), "unlock", "--yes"],
        cwd=ROOT,
        env={**os.environ, "RANDOPONY_HOST_ROOT": str(root)},
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


def test_unlock_never_clears_the_lock_of_a_run_that_still_runs(host):
    running = subprocess.Popen(["sleep", "infinity"])
    try:
        hold(host, "promote", "2026r2", by=records.who(), pid=running.pid)
        done = fab_unlock(host.root)
        assert done.returncode == 1, done.stdout
        assert f"process {running.pid} that holds the lock is still running" in done.stderr
        assert records.lock_holder(host)["pid"] == running.pid
    finally:
        running.kill()
        running.wait()
    done = fab_unlock(host.root)  # its holder died: cleared
    assert done.returncode == 0 and "Lock cleared." in done.stdout, done.stderr
    assert records.lock_holder(host) is None
