"""The host a release is deployed to: a local folder (the embedded default) or a machine reached
over SSH (deploy/ssh.py). Both offer the same few operations, so every task works on either.

Every path handed to a host is checked to lie under the host root, and every command is a list of
arguments (quoted with shlex for SSH): nothing from a release name or a path reaches a shell as
code.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Protocol


class HostError(Exception):
    """A host operation failed; the message says what, with the command's output."""


class PathOutsideRoot(HostError):
    pass


@dataclass(frozen=True)
class Result:
    returncode: int
    stdout: str
    stderr: str


def check_under_root(root: PurePosixPath, path: PurePosixPath | str) -> PurePosixPath:
    """The absolute, normalised path, or PathOutsideRoot. Symbolic `..` tricks are refused
    before anything runs."""
    path = PurePosixPath(path)
    if not path.is_absolute():
        path = root / path
    parts: list[str] = []
    for part in path.parts[1:]:
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                raise PathOutsideRoot(f"{path} leaves the host root {root}")
            parts.pop()
        else:
            parts.append(part)
    normal = PurePosixPath("/", *parts)
    if normal != root and root not in normal.parents:
        raise PathOutsideRoot(f"{normal} is outside the host root {root}")
    return normal


def command_error(argv: Sequence[str], result: Result) -> HostError:
    output = (result.stdout + result.stderr).strip()
    tail = output[-3000:] if output else "(no output)"
    return HostError(
        f"`{' '.join(map(str, argv))}` failed with exit code {result.returncode}:\n{tail}"
    )


class Host(Protocol):
    root: PurePosixPath
    description: str

    def path(self, *parts: str) -> PurePosixPath: ...

    def run(
        self,
        argv: Sequence[str],
        *,
        cwd: PurePosixPath | None = None,
        env: dict[str, str] | None = None,
        check: bool = True,
        timeout: float | None = None,
        echo: Callable[[str], None] | None = None,
    ) -> Result: ...

    def exists(self, path) -> bool: ...

    def is_dir(self, path) -> bool: ...

    def read_text(self, path) -> str | None: ...

    def write_text(self, path, text: str, mode: int = 0o644) -> None: ...

    def append_line(self, path, line: str) -> None: ...

    def mkdir(self, path, mode: int = 0o755) -> None: ...

    def symlink(self, target: str, link) -> None: ...

    def chmod(self, path, mode: int) -> None: ...

    def remove(self, path) -> None: ...

    def rsync_to(
        self,
        source: Path,
        dest,
        excludes: Sequence[str],
        echo: Callable[[str], None] | None = None,
    ) -> Result: ...

    def reach(self, port: int) -> AbstractContextManager[int]: ...

    def spawn(self, argv: Sequence[str], *, cwd: PurePosixPath | None = None) -> Conversation: ...

    def close(self) -> None: ...


class Conversation:
    """A program on a host that is talked to a line at a time: a line to its stdin, a line back
    from its stdout. Closing its stdin asks it to end. `stderr` is read only at the end."""

    def __init__(
        self,
        argv: Sequence[str],
        stdin,
        stdout,
        finish: Callable[[], tuple[int, str]],
        pid: int | None = None,
    ):
        self.argv = list(argv)
        self._stdin, self._stdout, self._finish = stdin, stdout, finish
        self.pid = pid  # on this machine only
        self.closed = False

    def read_line(self) -> str:
        line = self._stdout.readline()
        if isinstance(line, bytes):
            line = line.decode()
        if not line:
            code, stderr = self.close()
            tail = stderr.strip()[-2000:] or "(nothing on stderr)"
            raise HostError(f"`{self.argv[0]}` ended (exit code {code}): {tail}")
        return line

    def ask(self, line: str) -> str:
        try:
            self._stdin.write(line + "\n")
            self._stdin.flush()
        except OSError as error:
            self.close()
            raise HostError(f"`{self.argv[0]}` is gone: {error}") from None
        return self.read_line()

    def close(self) -> tuple[int, str]:
        """End its stdin and wait for it: (exit code, stderr)."""
        if self.closed:
            return 0, ""
        self.closed = True
        try:
            self._stdin.close()
        except OSError:
            pass
        return self._finish()


# Commands run on a host create files for their owner alone: databases, rider lists and logs
# hold riders' personal data.
PRIVATE_UMASK = 0o077

RSYNC_OPTIONS = ("--archive", "--delete", "--links", "--human-readable", "--info=stats1,progress2")


class LocalHost:
    """A host root on this machine."""

    def __init__(self, root: Path | str):
        root = Path(root)
        if not root.is_dir():
            raise HostError(
                f"the host root {root} does not exist (fab host_up creates the local one)"
            )
        self.root = PurePosixPath(root.resolve())
        self.description = f"local host {self.root}"

    def path(self, *parts: str) -> PurePosixPath:
        return check_under_root(self.root, self.root.joinpath(*parts))

    def _checked(self, path) -> Path:
        return Path(check_under_root(self.root, path))

    def run(self, argv, *, cwd=None, env=None, check=True, timeout=None, echo=None) -> Result:
        argv = [str(a) for a in argv]
        full_env = dict(os.environ, **(env or {}))
        try:
            if echo is None:
                done = subprocess.run(
                    argv,
                    cwd=self._checked(cwd) if cwd else None,
                    env=full_env,
                    umask=PRIVATE_UMASK,
                    capture_output=True,
                    text=True,
                    timeout=timeout,
                    check=False,
                )
                result = Result(done.returncode, done.stdout, done.stderr)
            else:
                result = run_local_echoing(
                    argv, cwd and self._checked(cwd), full_env, timeout, echo
                )
        except FileNotFoundError as error:
            raise HostError(
                f"`{argv[0]}` is not installed on {self.description}: {error}"
            ) from None
        except subprocess.TimeoutExpired:
            raise HostError(f"`{' '.join(argv)}` took longer than {timeout} s") from None
        if check and result.returncode != 0:
            raise command_error(argv, result)
        return result

    def exists(self, path) -> bool:
        return os.path.lexists(self._checked(path))

    def is_dir(self, path) -> bool:
        return self._checked(path).is_dir()

    def read_text(self, path) -> str | None:
        try:
            return self._checked(path).read_text()
        except FileNotFoundError:
            return None

    def write_text(self, path, text: str, mode: int = 0o644) -> None:
        target = self._checked(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, mode)
            os.replace(tmp, target)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    def append_line(self, path, line: str) -> None:
        target = self._checked(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "a") as f:
            f.write(line.rstrip("\n") + "\n")
            f.flush()
            os.fsync(f.fileno())

    def mkdir(self, path, mode: int = 0o755) -> None:
        self._checked(path).mkdir(parents=True, exist_ok=True, mode=mode)

    def symlink(self, target: str, link) -> None:
        link = self._checked(link)
        tmp = link.with_name(f".{link.name}.{secrets.token_hex(4)}")
        if os.path.lexists(tmp):
            tmp.unlink()
        os.symlink(target, tmp)
        os.replace(tmp, link)  # atomic: readers see the old link or the new one

    def chmod(self, path, mode: int) -> None:
        os.chmod(self._checked(path), mode)

    def remove(self, path) -> None:
        target = self._checked(path)
        if target == Path(self.root):
            raise PathOutsideRoot("refusing to remove the host root itself")
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif os.path.lexists(target):
            target.unlink()

    def rsync_to(self, source: Path, dest, excludes, echo=None) -> Result:
        dest = self._checked(dest)
        dest.mkdir(parents=True, exist_ok=True)
        argv = [
            "rsync",
            *RSYNC_OPTIONS,
            *(f"--exclude={e}" for e in excludes),
            f"{source}/",
            f"{dest}/",
        ]
        return self.run(argv, echo=echo)

    @contextmanager
    def reach(self, port: int) -> Iterator[int]:
        """A local port that reaches `port` on the host's loopback: here, the same port."""
        yield port

    def spawn(self, argv, *, cwd=None) -> Conversation:
        argv = [str(a) for a in argv]
        try:
            process = subprocess.Popen(
                argv,
                cwd=self._checked(cwd) if cwd else None,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                umask=PRIVATE_UMASK,
            )
        except FileNotFoundError as error:
            raise HostError(
                f"`{argv[0]}` is not installed on {self.description}: {error}"
            ) from None

        def finish() -> tuple[int, str]:
            # Its stdin is closed: it ends, and its stderr with it.
            stderr = process.stderr.read()
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            process.stdout.close()
            process.stderr.close()
            return process.returncode, stderr or ""

        return Conversation(argv, process.stdin, process.stdout, finish, process.pid)

    def close(self) -> None:
        pass


def run_local_echoing(argv, cwd, env, timeout, echo) -> Result:
    """Run a command showing its output as it comes (progress of rsync, installs), keeping it
    for the error message. The timeout is a deadline for the whole command."""
    process = subprocess.Popen(
        argv,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        umask=PRIVATE_UMASK,
    )
    timer = None
    if timeout:
        import threading

        timer = threading.Timer(timeout, process.kill)
        timer.start()
    lines = []
    try:
        assert process.stdout is not None
        for line in _lines(process.stdout):
            lines.append(line)
            echo(line)
        returncode = process.wait()
    finally:
        if timer is not None:
            timer.cancel()
    if timer is not None and returncode == -9:
        raise subprocess.TimeoutExpired(argv, timeout)
    return Result(returncode, "".join(lines), "")


def _lines(stream) -> Iterator[str]:
    """rsync's progress2 rewrites one line with carriage returns; show each update."""
    buffer = ""
    while True:
        chunk = stream.read(1)
        if not chunk:
            if buffer:
                yield buffer
            return
        buffer += chunk
        if chunk in "\r\n":
            yield buffer
            buffer = ""
