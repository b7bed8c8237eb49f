"""A real OpenSSH server on a free loopback port, for tests of deploy/ssh.py and anything that
deploys over SSH. Import the fixture into a conftest: `from tests.sshd import ssh_server`.

The server lets the current user in with a throwaway ed25519 key; the client trusts only the
server's own throwaway host key (a known_hosts file written here), so nothing in ~/.ssh is used
or changed.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SSHD = "/usr/sbin/sshd"


@dataclass(frozen=True)
class SSHServer:
    host: str
    port: int
    user: str
    key_filename: str
    known_hosts: str
    folder: Path
    log: Path

    @property
    def host_spec(self) -> str:
        return f"{self.user}@{self.host}:{self.port}"

    def host_options(self) -> dict:
        """Keyword arguments for deploy.remote.ssh.SSHHost(root, **server.host_options())."""
        return {
            "host": self.host,
            "user": self.user,
            "port": self.port,
            "key_filename": self.key_filename,
            "known_hosts": self.known_hosts,
        }


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _require_tools() -> None:
    missing = [
        name
        for name, present in [
            (SSHD, os.access(SSHD, os.X_OK)),
            ("ssh-keygen", shutil.which("ssh-keygen")),
            ("ssh", shutil.which("ssh")),
            ("rsync", shutil.which("rsync")),
        ]
        if not present
    ]
    if missing:
        pytest.fail(
            f"{', '.join(missing)} not found: the SSH host tests need a real sshd and rsync;"
            " `make test` installs openssh-server and rsync"
        )


def _keygen(path: Path) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "randopony-test", "-f", str(path)],
        check=True,
        capture_output=True,
    )


def _quoted(path: Path) -> str:
    # sshd_config splits on spaces unless a value is in double quotes (it has no escapes).
    if '"' in str(path):
        pytest.fail(f"cannot name {path} in sshd_config: it contains a double quote")
    return f'"{path}"'


# The TLS settings this machine's own shells get; a real server's accounts have their own. The
# test server is this machine, so its sessions get the same, or installs could not verify the
# package index.
MACHINE_ENVIRONMENT = ("SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "PIP_CERT")


def _set_env() -> list[str]:
    values = [f"{name}={os.environ[name]}" for name in MACHINE_ENVIRONMENT if os.environ.get(name)]
    return [f"SetEnv {' '.join(values)}"] if values else []


def _config(folder: Path, port: int) -> str:
    return "\n".join(
        [
            *_set_env(),
            f"Port {port}",
            "ListenAddress 127.0.0.1",
            f"HostKey {_quoted(folder / 'host_key')}",
            f"AuthorizedKeysFile {_quoted(folder / 'authorized_keys')}",
            f"PidFile {_quoted(folder / 'sshd.pid')}",
            "UsePAM no",
            # The key files live under the world-writable temporary folder.
            "StrictModes no",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PubkeyAuthentication yes",
            "PermitRootLogin prohibit-password",
            "AllowTcpForwarding local",
            "Subsystem sftp internal-sftp",
            "",
        ]
    )


def _wait_for_port(port: int, process: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"sshd exited with {process.returncode}:\n{log.read_text()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    pytest.fail(f"sshd did not answer on port {port} within {timeout} s:\n{log.read_text()}")


def _stop(process: subprocess.Popen) -> None:
    # sshd forks one process per connection into its own process group (started with
    # start_new_session): stopping the group also ends connections a failed test left open.
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        process.wait(5)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@pytest.fixture(scope="session")
def ssh_server(tmp_path_factory) -> Iterator[SSHServer]:
    _require_tools()
    # A space in the folder name: key and known_hosts paths must survive quoting (rsync -e).
    folder = tmp_path_factory.mktemp("ssh server")
    _keygen(folder / "client_key")
    _keygen(folder / "host_key")
    shutil.copy(folder / "client_key.pub", folder / "authorized_keys")
    port = _free_port()
    config = folder / "sshd_config"
    config.write_text(_config(folder, port))
    # sshd refuses to start without its privilege separation folder; apt does not create it
    # until the service first runs.
    try:
        os.makedirs("/run/sshd", exist_ok=True)
    except PermissionError:
        pass  # not root: sshd then runs without privilege separation
    log = folder / "sshd.log"
    with open(log, "wb") as log_file:
        process = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(config)],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        _wait_for_port(port, process, log)
        host_key_type, host_key = (folder / "host_key.pub").read_text().split()[:2]
        known_hosts = folder / "known_hosts"
        known_hosts.write_text(f"[127.0.0.1]:{port} {host_key_type} {host_key}\n")
        yield SSHServer(
            host="127.0.0.1",
            port=port,
            user=pwd.getpwuid(os.getuid()).pw_name,
            key_filename=str(folder / "client_key"),
            known_hosts=str(known_hosts),
            folder=folder,
            log=log,
        )
    finally:
        _stop(process)
