"""A host root on a machine reached over SSH: the same operations as deploy.remote.hosts.LocalHost.

This is the only module in deploy/ that imports Fabric or paramiko, so the rest of the deploy code
sees a Host and nothing else. Commands are argv lists joined with shlex for the remote login
shell (assumed POSIX); every path is checked against the host root before anything is sent.
File contents and metadata go over SFTP; renames and syncs that need coreutils go as commands.

One connection per SSHHost, opened on the first operation (which also checks that the root
exists), closed by close().
"""

from __future__ import annotations

import getpass
import io
import re
import secrets
import select
import shlex
import socket
import stat
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import NamedTuple

import fabric
import invoke
import paramiko

from deploy.remote.hosts import (
    RSYNC_OPTIONS,
    Conversation,
    HostError,
    PathOutsideRoot,
    Result,
    check_under_root,
    command_error,
    run_local_echoing,
)

# A name the remote shell takes as an assignment, not as a word to run.
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SPEC = re.compile(
    r"""(?: (?P<user> [^@\s:/]+ ) @ )?
        (?: \[ (?P<ipv6> [0-9A-Fa-f:.]+ ) \] | (?P<host> [^@\s:/\[\]-][^@\s:/\[\]]* ) )
        (?: : (?P<port> [0-9]{1,5} ) )?""",
    re.VERBOSE,
)


class HostSpec(NamedTuple):
    user: str | None
    host: str
    port: int


def parse_host_spec(spec: str) -> HostSpec:
    """`user@host:port`, `host:port`, `user@host`, `host` or `user@[::1]:port`."""
    match = _SPEC.fullmatch(spec.strip())
    if not match:
        raise HostError(
            f"{spec!r} is not an SSH host; expected user@host:port (user and port optional)"
        )
    port = int(match["port"]) if match["port"] else 22
    if not 0 < port < 65536:
        raise HostError(f"{spec!r}: port {port} is not between 1 and 65535")
    return HostSpec(match["user"], match["ipv6"] or match["host"], port)


class _UnknownHostKey(paramiko.SSHException):
    pass


class _RejectUnknownHostKey(paramiko.MissingHostKeyPolicy):
    """Paramiko's RejectPolicy raises a bare SSHException; ours is recognisable, so the error
    can say which file to fix instead of 'not found in known_hosts'."""

    def missing_host_key(self, client, hostname, key):
        raise _UnknownHostKey(f"{hostname} has an unknown {key.get_name()} host key")


class SSHHost:
    """A host root on a machine reached over SSH (Fabric 3 / paramiko)."""

    def __init__(
        self,
        root: str | PurePosixPath,
        host: str,
        user: str | None = None,
        port: int = 22,
        key_filename: str | None = None,
        known_hosts: str | None = None,
        connect_timeout: float = 10,
    ):
        root = PurePosixPath(root)
        if not root.is_absolute():
            raise HostError(f"the host root {root} must be an absolute path on {host}")
        # The root itself must be normal, or check_under_root would compare against a path
        # that never matches what it returns.
        self.root = check_under_root(PurePosixPath("/"), root)
        if not host or host.startswith("-"):
            raise HostError(f"{host!r} is not a host name")
        if not 0 < int(port) < 65536:
            raise HostError(f"port {port} is not between 1 and 65535")
        self.host = host
        self.port = int(port)
        self.key_filename = key_filename
        self.known_hosts = known_hosts
        self.connect_timeout = connect_timeout
        self._connection: fabric.Connection | None = None
        self._lock = threading.Lock()
        self.user = user or getpass.getuser()
        self.address = f"{self.user}@{host}:{self.port}"
        self.description = f"SSH host {self.address} {self.root}"

    @classmethod
    def from_spec(cls, root: str | PurePosixPath, spec: str, **options) -> SSHHost:
        user, host, port = parse_host_spec(spec)
        return cls(root, host, user=user, port=port, **options)

    def __enter__(self) -> SSHHost:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- connection ---------------------------------------------------------------------------

    def _connect(self) -> fabric.Connection:
        with self._lock:
            if self._connection is not None and self._connection.is_connected:
                return self._connection
            connect_kwargs = {
                # Connection() would turn a float connect_timeout into int(0.5) == 0, no timeout.
                "timeout": self.connect_timeout,
                "banner_timeout": self.connect_timeout,
                "auth_timeout": self.connect_timeout,
            }
            if self.key_filename:
                # Only the given key: an agent or ~/.ssh keys would make tests and deploys
                # depend on whoever runs them.
                connect_kwargs.update(
                    key_filename=self.key_filename, look_for_keys=False, allow_agent=False
                )
            connection = fabric.Connection(
                self.host, user=self.user, port=self.port, connect_kwargs=connect_kwargs
            )
            # Fabric trusts any host key it has not seen (AutoAddPolicy); a deploy must not.
            connection.client.set_missing_host_key_policy(_RejectUnknownHostKey())
            try:
                if self.known_hosts:
                    connection.client.load_host_keys(self.known_hosts)
                else:
                    connection.client.load_system_host_keys()
            except OSError as error:
                raise HostError(
                    f"cannot read the known hosts file {self.known_hosts}: {error}"
                ) from error
            try:
                connection.open()
                attributes = connection.sftp().stat(str(self.root))
            except FileNotFoundError:
                connection.close()
                raise HostError(
                    f"the host root {self.root} does not exist on {self.address}"
                ) from None
            except BaseException as error:
                connection.client.close()
                raise self._connect_error(error) from error
            if not stat.S_ISDIR(attributes.st_mode):
                connection.close()
                raise HostError(f"the host root {self.root} on {self.address} is not a folder")
            self._connection = connection
            return connection

    def _connect_error(self, error: BaseException) -> BaseException:
        where = f"{self.address}"
        known_hosts = self.known_hosts or "~/.ssh/known_hosts"
        if isinstance(error, _UnknownHostKey):
            return HostError(
                f"cannot connect to {where}: {error} (not in {known_hosts}; check the key"
                f" fingerprint, then add it with ssh-keyscan -p {self.port} {self.host})"
            )
        if isinstance(error, paramiko.BadHostKeyException):
            return HostError(
                f"cannot connect to {where}: its host key does not match the one in"
                f" {known_hosts} (a new server, or someone in between)"
            )
        if isinstance(error, paramiko.AuthenticationException):
            key = self.key_filename or "the default keys"
            return HostError(f"cannot connect to {where}: authentication with {key} failed")
        if isinstance(error, paramiko.ssh_exception.NoValidConnectionsError):
            return HostError(f"cannot connect to {where}: connection refused")
        if isinstance(error, socket.gaierror):
            return HostError(f"cannot connect to {where}: unknown host name ({error})")
        if isinstance(error, TimeoutError):
            return HostError(
                f"cannot connect to {where}: no answer within {self.connect_timeout} s"
            )
        if isinstance(error, paramiko.SSHException | OSError | EOFError):
            return HostError(f"cannot connect to {where}: {error}")
        return error

    def close(self) -> None:
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None

    # -- paths and commands -------------------------------------------------------------------

    def path(self, *parts: str) -> PurePosixPath:
        return check_under_root(self.root, self.root.joinpath(*parts))

    def _checked(self, path) -> PurePosixPath:
        return check_under_root(self.root, path)

    def _command(self, argv: Sequence[str], cwd, env) -> tuple[str, str | None]:
        """The remote shell's command line, and what goes to its stdin. Environment values go
        through stdin, never the command line: the remote `sh -c` line is in every user's `ps`
        (a wrangler password once was)."""
        if not argv:
            raise HostError("no command given")
        command = shlex.join(argv)
        stdin = None
        if env:
            reads, values = [], []
            for name, value in env.items():
                if not _ENV_NAME.fullmatch(name):
                    raise HostError(f"{name!r} is not a valid environment variable name")
                value = str(value)
                if "\0" in value:
                    raise HostError(f"the value of {name} has a NUL in it")
                # Exactly its bytes (dd reads one at a time, never the next value's), any
                # line breaks included; the "." keeps $( ) from dropping trailing ones.
                size = len(value.encode())
                reads.append(
                    f"{name}=$(dd bs=1 count={size} 2>/dev/null; echo .) && "
                    f"{name}=${{{name}%.}} && export {name}"
                )
                values.append(value)
            command = " && ".join([*reads, f"exec {command} </dev/null"])
            stdin = "".join(values)
        if cwd is not None:
            command = f"cd {shlex.quote(str(self._checked(cwd)))} && {command}"
        return command, stdin

    def run(self, argv, *, cwd=None, env=None, check=True, timeout=None, echo=None) -> Result:
        argv = [str(a) for a in argv]
        command, stdin = self._command(argv, cwd, env)
        result = self._execute(command, argv, timeout=timeout, echo=echo, stdin=stdin)
        if check and result.returncode != 0:
            raise command_error(argv, result)
        return result

    def _execute(
        self, command: str, shown: Sequence[str], *, timeout=None, echo=None, stdin=None
    ) -> Result:
        connection = self._connect()
        # Under umask 077 the databases, rider lists and logs a command creates are its
        # owner's alone.
        command = f"umask 077 && {command}"
        in_stream = io.StringIO(stdin) if stdin is not None else False
        options = {"warn": True, "in_stream": in_stream, "echo_stdin": False, "timeout": timeout}
        writer = _LineWriter(echo) if echo else None
        if writer:
            options.update(hide=False, out_stream=writer, err_stream=writer)
        else:
            options.update(hide=True)
        timed_out = HostError(
            f"`{' '.join(shown)}` did not finish within {timeout} s on {self.address}"
        )
        started = time.monotonic()
        try:
            done = connection.run(command, **options)
        except invoke.CommandTimedOut as error:
            raise timed_out from error
        except (paramiko.SSHException, OSError, EOFError) as error:
            raise HostError(f"`{' '.join(shown)}` on {self.address} failed: {error}") from error
        finally:
            if writer:
                writer.flush_line()
        # Under load invoke sometimes reports a timed-out command as exit -1 instead of raising.
        if timeout and done.exited == -1 and time.monotonic() - started >= timeout:
            raise timed_out
        return Result(done.exited, done.stdout, done.stderr)

    def spawn(self, argv, *, cwd=None) -> Conversation:
        argv = [str(a) for a in argv]
        command, _ = self._command(argv, cwd, None)
        try:
            channel = self._connect().client.get_transport().open_session()
            channel.exec_command(f"umask 077 && {command}")
        except (paramiko.SSHException, OSError, EOFError) as error:
            raise HostError(f"`{' '.join(argv)}` on {self.address} failed: {error}") from error

        def finish() -> tuple[int, str]:
            channel.shutdown_write()
            code = channel.recv_exit_status()
            stderr = channel.makefile_stderr("rb").read().decode(errors="replace")
            channel.close()
            return code, stderr

        stdin = _TextWriter(channel.makefile_stdin("wb"))
        return Conversation(argv, stdin, channel.makefile("rb"), finish)

    def _shell(self, *commands: Sequence[str]) -> Result:
        """Several argv lists joined with &&, for steps that must run together (sync, then
        rename); fails with the output like run(check=True)."""
        command = " && ".join(shlex.join([str(a) for a in argv]) for argv in commands)
        shown = [w for argv in commands for w in [*map(str, argv), "&&"]][:-1]
        result = self._execute(command, shown)
        if result.returncode != 0:
            raise command_error(shown, result)
        return result

    # -- files --------------------------------------------------------------------------------

    def _sftp(self) -> paramiko.SFTPClient:
        return self._connect().sftp()

    def _sftp_error(self, action: str, path, error: OSError) -> HostError:
        return HostError(f"cannot {action} {path} on {self.address}: {error}")

    def exists(self, path) -> bool:
        path = self._checked(path)
        try:
            self._sftp().lstat(str(path))
        except FileNotFoundError:
            return False
        except OSError as error:
            raise self._sftp_error("inspect", path, error) from error
        return True

    def is_dir(self, path) -> bool:
        path = self._checked(path)
        try:
            return stat.S_ISDIR(self._sftp().stat(str(path)).st_mode)
        except FileNotFoundError:
            return False
        except OSError as error:
            raise self._sftp_error("inspect", path, error) from error

    def read_text(self, path) -> str | None:
        path = self._checked(path)
        try:
            with self._sftp().open(str(path), "r") as f:
                return f.read().decode()
        except FileNotFoundError:
            return None
        except OSError as error:
            raise self._sftp_error("read", path, error) from error

    def write_text(self, path, text: str, mode: int = 0o644) -> None:
        target = self._checked(path)
        self._ensure_dir(target.parent)
        tmp = target.with_name(f".{target.name}.{secrets.token_hex(6)}")
        sftp = self._sftp()
        try:
            with sftp.open(str(tmp), "wx") as f:
                f.set_pipelined(True)
                # The mode is set before any content, so a secret is never readable by others.
                f.chmod(mode)
                f.write(text.encode())
            # sync FILE fsyncs it: the rename must not reach the disk before the content.
            self._shell(["sync", "--", tmp], ["mv", "-fT", "--", tmp, target])
        except BaseException as error:
            try:
                sftp.remove(str(tmp))
            except OSError:
                pass
            if isinstance(error, OSError):
                raise self._sftp_error("write", target, error) from error
            raise

    def _ensure_dir(self, path: PurePosixPath) -> None:
        try:
            if stat.S_ISDIR(self._sftp().stat(str(path)).st_mode):
                return
        except FileNotFoundError:
            pass
        except OSError as error:
            raise self._sftp_error("inspect", path, error) from error
        self._shell(["mkdir", "-p", "--", path])

    def append_line(self, path, line: str) -> None:
        target = self._checked(path)
        command = " && ".join(
            [
                shlex.join(["mkdir", "-p", "--", str(target.parent)]),
                # >> opens with O_APPEND: concurrent appenders never overwrite each other.
                f"printf '%s\\n' {shlex.quote(line.rstrip(chr(10)))} >> {shlex.quote(str(target))}",
                shlex.join(["sync", "--", str(target)]),
            ]
        )
        shown = ["append a line to", str(target)]
        result = self._execute(command, shown)
        if result.returncode != 0:
            raise command_error(shown, result)

    def mkdir(self, path, mode: int = 0o755) -> None:
        self._shell(["mkdir", "-p", "-m", f"{mode:o}", "--", self._checked(path)])

    def symlink(self, target: str, link) -> None:
        link = self._checked(link)
        tmp = link.with_name(f".{link.name}.{secrets.token_hex(6)}")
        try:
            # mv -T renames over the old link (rename(2)): readers see the old link or the new
            # one, never none; -T also stops mv from moving into the directory the link names.
            self._shell(["ln", "-s", "--", target, tmp], ["mv", "-fT", "--", tmp, link])
        except HostError:
            try:
                self._sftp().remove(str(tmp))
            except OSError:
                pass
            raise

    def chmod(self, path, mode: int) -> None:
        path = self._checked(path)
        try:
            self._sftp().chmod(str(path), mode)
        except OSError as error:
            raise self._sftp_error("chmod", path, error) from error

    def remove(self, path) -> None:
        target = self._checked(path)
        if target == self.root:
            raise PathOutsideRoot("refusing to remove the host root itself")
        # rm -r removes a symbolic link, never what it points to.
        self._shell(["rm", "-rf", "--", target])

    # -- transfers and tunnels ----------------------------------------------------------------

    def ssh_command(self) -> list[str]:
        """The ssh command line for tools that bring their own (rsync -e), with the same key,
        known hosts and strictness as the Fabric connection."""
        argv = ["ssh", "-p", str(self.port), "-o", "BatchMode=yes"]
        argv += [
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            f"ConnectTimeout={self.connect_timeout:g}",
        ]
        if self.key_filename:
            argv += ["-i", self.key_filename, "-o", "IdentitiesOnly=yes"]
        if self.known_hosts:
            if '"' in self.known_hosts:
                raise HostError(f"ssh cannot name the known hosts file {self.known_hosts}")
            # ssh splits this option's value on spaces (a list of files) unless double-quoted.
            argv += ["-o", f'UserKnownHostsFile="{self.known_hosts}"']
        return argv

    def rsync_to(self, source: Path, dest, excludes, echo=None) -> Result:
        dest = self._checked(dest)
        self.mkdir(dest)
        host = f"[{self.host}]" if ":" in self.host else self.host
        argv = [
            "rsync",
            *RSYNC_OPTIONS,
            # The remote path travels inside rsync's protocol, not through the remote shell:
            # rsync 3.2.4+ escapes it itself, so quoting it here would name the wrong folder.
            "--secluded-args" if _rsync_has_secluded_args() else "--protect-args",
            "-e",
            shlex.join(self.ssh_command()),
            *(f"--exclude={e}" for e in excludes),
            f"{source}/",
            f"{self.user}@{host}:{dest}/",
        ]
        if echo is None:
            done = subprocess.run(argv, capture_output=True, text=True, check=False)
            result = Result(done.returncode, done.stdout, done.stderr)
        else:
            result = run_local_echoing(argv, None, None, None, echo)
        if result.returncode != 0:
            raise command_error(argv, result)
        return result

    @contextmanager
    def reach(self, port: int) -> Iterator[int]:
        """A local port (127.0.0.1 only) that reaches 127.0.0.1:port on the host through the
        SSH connection, so services bound to the host's loopback are never exposed.

        Not Fabric's forward_local: it binds its listener in a thread after yielding (a first
        connection can be refused), and one failed channel (the service not up yet) ends the
        whole tunnel. Here the listener is bound before yielding and each connection stands
        alone."""
        transport = self._connect().transport
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        listener.settimeout(0.1)
        stop = threading.Event()
        forwarder = threading.Thread(
            target=_accept_forever,
            args=(listener, transport, port, stop),
            name=f"ssh tunnel to {self.host}:{port}",
            daemon=True,
        )
        forwarder.start()
        try:
            yield listener.getsockname()[1]
        finally:
            stop.set()
            forwarder.join()
            listener.close()


_secluded: bool | None = None


def _rsync_has_secluded_args() -> bool:
    """--protect-args was renamed --secluded-args in rsync 3.3; the old name still works but
    warns on some builds."""
    global _secluded
    if _secluded is None:
        try:
            done = subprocess.run(["rsync", "--help"], capture_output=True, text=True)
        except FileNotFoundError as error:
            raise HostError("rsync is not installed on this machine") from error
        _secluded = "--secluded-args" in done.stdout
    return _secluded


def _accept_forever(listener, transport, port: int, stop: threading.Event) -> None:
    pumps = []
    while not stop.is_set():
        try:
            client, peer = listener.accept()
        except TimeoutError:
            continue
        except OSError:
            break
        try:
            channel = transport.open_channel("direct-tcpip", ("127.0.0.1", port), peer, timeout=10)
        except (paramiko.SSHException, OSError, EOFError):
            # Nothing listens there (yet): this client sees a closed connection, the tunnel
            # stays up for the next one.
            client.close()
            continue
        pump = threading.Thread(target=_pump, args=(client, channel, stop), daemon=True)
        pump.start()
        pumps.append(pump)
        pumps = [p for p in pumps if p.is_alive()]
    for pump in pumps:
        pump.join()


def _pump(client: socket.socket, channel, stop: threading.Event) -> None:
    """Copy bytes both ways, passing on each side's end of data (HTTP clients may half-close)
    until both sides are done or the tunnel closes."""
    open_ends = {client, channel}
    try:
        while open_ends and not stop.is_set():
            readable, _, _ = select.select(list(open_ends), [], [], 0.1)
            for end in readable:
                data = end.recv(65536)
                other = channel if end is client else client
                if data:
                    other.sendall(data)
                    continue
                open_ends.discard(end)
                if other is channel:
                    channel.shutdown_write()
                else:
                    client.shutdown(socket.SHUT_WR)
    except (OSError, EOFError, paramiko.SSHException):
        pass  # one side went away: this connection is over, the tunnel is not
    finally:
        channel.close()
        client.close()


class _LineWriter:
    """The out_stream for invoke: hands each complete line (or rsync-style carriage-return
    update) to echo as it arrives, like LocalHost's echo."""

    def __init__(self, echo: Callable[[str], None]):
        self.echo = echo
        self.buffer = ""
        self.lock = threading.Lock()

    def write(self, data: str) -> int:
        with self.lock:
            for char in data:
                self.buffer += char
                if char in "\r\n":
                    line, self.buffer = self.buffer, ""
                    self.echo(line)
        return len(data)

    def flush(self) -> None:
        pass

    def flush_line(self) -> None:
        with self.lock:
            if self.buffer:
                line, self.buffer = self.buffer, ""
                self.echo(line)


class _TextWriter:
    """Text lines onto a paramiko channel's binary stdin."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, text: str) -> None:
        self.stream.write(text.encode())

    def flush(self) -> None:
        self.stream.flush()

    def close(self) -> None:
        self.stream.close()
