"""Fixtures for the deploy tests; the SSH server lives in tests/sshd.py so other suites can
use it too."""

from tests.sshd import ssh_server  # noqa: F401
