"""The tests' step crash hook fires on a test host only, and says so either way: a stray
RANDOPONY_TEST_CRASH_AFTER_STEP once killed a real promotion after hold_writes."""

import os
import subprocess
import sys

from tests.conftest import ROOT

CALL = (
    "import sys; from deploy.remote import records; from deploy.remote.hosts import LocalHost; "
    "records.crash_point(LocalHost(sys.argv[1]), 'promote:hold_writes', 'hold_writes'); "
    "print('went on')"
)


def boundary(root, wanted):
    return subprocess.run(
        [sys.executable, "-c", CALL, str(root)],
        cwd=ROOT,
        env={**os.environ, "RANDOPONY_TEST_CRASH_AFTER_STEP": wanted},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_on_a_host_that_is_not_a_test_host_it_is_ignored_loudly(tmp_path):
    (tmp_path / "deploy").mkdir()
    done = boundary(tmp_path, "hold_writes")
    assert done.returncode == 0 and "went on" in done.stdout
    assert "is not a test host: ignored" in done.stderr


def test_on_a_test_host_it_kills_the_run_at_its_boundary_and_says_so(tmp_path):
    (tmp_path / "deploy").mkdir()
    (tmp_path / "deploy" / "test-host").write_text("")
    done = boundary(tmp_path, "hold_writes")
    assert done.returncode == 9 and "went on" not in done.stdout
    assert "TEST CRASH: killed after hold_writes" in done.stderr
    other = boundary(tmp_path, "switch_domain")  # another boundary: this one goes on
    assert other.returncode == 0 and other.stderr == ""
