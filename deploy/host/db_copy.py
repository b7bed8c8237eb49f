"""A consistent, fast copy of a live SQLite database (WAL mode), for promotion and staging refresh.

`consistent_copy(src, dst)` takes the source's write lock with `BEGIN IMMEDIATE` (readers carry on,
writers wait), copies the main file and the `-wal` file with the kernel's file copy, releases the
lock, and then, on the copy only, folds the copied WAL into the copied main file so the destination
is one self-contained file that is renamed into place atomically.

Why the copy is consistent (the whole argument, so it can be checked):

* While we hold the WAL write lock nobody can commit, so no frame is appended to the WAL, and nobody
  can restart or truncate the WAL either: a restart is only done by a writer about to write, and the
  RESTART/TRUNCATE/FULL checkpoints need the write lock (they wait for it, or degrade to PASSIVE).
  The WAL's committed frames are therefore fixed while we copy it.
* Other connections may still run a PASSIVE checkpoint while we copy (an auto-checkpoint finishing
  after the last commit, or an explicit `PRAGMA wal_checkpoint`). A checkpoint only writes pages
  that have a committed frame in the WAL into the main file. So every page of the main file is
  either stable while we copy, or it has a frame in the (fixed) WAL that replaces it when the copy
  is opened. A page torn by a checkpoint write is always one that the WAL replay overwrites.
* The "checkpoint and delete the WAL when the last connection closes" path needs an exclusive lock
  on the main file, which our open connection's shared lock prevents.
* So main file + WAL as copied are exactly what a crash while holding the write lock would leave on
  disk (main file possibly mid-checkpoint, no transaction in progress), which is the state SQLite's
  recovery is designed to open: the copy contains every transaction committed before we took the
  lock and nothing after it. WAL frames of a rolled-back transaction or of an older WAL generation
  fail the salt/checksum chain and are ignored by recovery, as they would be after a crash.

The source is never written: our locking connection only begins and rolls back, and it is opened
with SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, because otherwise closing it, when it is the last
connection, would checkpoint the WAL into the source file (the old release is the rollback point and
must stay byte for byte as it was).

Hold-time reduction: `precopy(src, dst)` copies the bulk without any lock (the result may be
inconsistent), remembering the WAL header at the start. `consistent_copy(src, dst, reuse=True)`
then, under the lock, repairs that precopy instead of copying it again:

* "wal" mode: if the WAL header (salts and checkpoint sequence) is the same as when the precopy
  started, the WAL was not restarted in between, so every main-file page a checkpoint wrote since
  then has a frame in the current WAL, which the copy also gets and which overrides that page.
  Only the WAL and any growth of the main file are copied under the lock.
* With the source's reads held (`ReadHold`, started before the precopy and alive until the lock
  is taken), "wal" mode holds whatever the WAL header says. A reader keeps its snapshot until it
  ends: if it reads the main file alone (read mark 0), no checkpoint may write into the main file
  at all, so the precopy of it is exact and everything since is in the WAL, however often the WAL
  restarted; if it reads through the WAL (a mark above 0), the WAL cannot restart, which is the
  case above. So a hold that copies only the WAL stays small whatever happened meanwhile.
* "compare" mode (anything else, e.g. the WAL was restarted or the precopy was touched): every
  1 MiB block of the source is compared with the precopy and only the differing 4 KiB pages are
  rewritten. This reads the file but writes almost nothing, and is correct whatever the precopy
  holds.

POSIX caveat: closing any file descriptor of a file drops every fcntl lock the *process* holds on
it, including SQLite's. This module keeps its descriptor of the source open until its own SQLite
connection is closed; a caller that has the source open with SQLite in the same process loses its
locks when we close ours, so run this as its own process (the CLI) next to a live site.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import ctypes.util
import functools
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

SQLITE_MAGIC = b"SQLite format 3\x00"
WAL_HEADER_SIZE = 32
BLOCK = 1 << 20  # read/compare unit in reuse mode: big enough that syscalls cost nothing
PAGE = 4096  # write unit within a differing block: SQLite's default page size
SPACE_MARGIN = 16 << 20  # head room so the copy never fills the disk to the last byte

# From sqlite3.h; the sqlite3 module of Python 3.11 does not expose sqlite3_db_config.
_SQLITE_OK = 0
_SQLITE_OPEN_READWRITE = 0x00000002
_SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE = 1006


class CopyError(Exception):
    """The copy was refused or failed; the message says why. Nothing is left at the destination."""


@dataclass(frozen=True)
class CopyResult:
    src: str
    dst: str
    mode: str  # "full", "wal", "compare" (consistent copies) or "precopy"
    db_bytes: int  # size of the source main file at the consistency point
    wal_bytes: int  # size of the source -wal file copied (0 if none)
    bytes_copied: int  # bytes written to the destination side by this call
    bytes_under_lock: int  # of those, bytes written while holding the source's write lock
    seconds: float  # total wall time of the call
    lock_seconds: float  # time the source's write lock was held (0 for precopy)
    lock_wait_seconds: float  # time spent waiting for the write lock
    locked_at: float  # time.monotonic() when the lock was taken: the consistency point

    def as_dict(self) -> dict:
        return asdict(self)


# ---------------------------------------------------------------------------------------------
# Paths


def precopy_path(dst: Path) -> Path:
    """Where `precopy` leaves the bulk copy: next to the destination, so the rename is atomic."""
    return dst.with_name(f".{dst.name}.precopy")


def _state_path(dst: Path) -> Path:
    return dst.with_name(f".{dst.name}.precopy.json")


def _side(path: Path, suffix: str) -> Path:
    return path.with_name(path.name + suffix)


def _remove(*paths: Path) -> None:
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


# ---------------------------------------------------------------------------------------------
# Checks


def _check(src: Path, dst: Path, needed_extra: int = 0, reusable: int = 0) -> tuple[int, int]:
    """Refuse early, before anything is written. Returns (db size, wal size)."""
    if not src.is_file():
        raise CopyError(f"source database {src} does not exist")
    with open(src, "rb") as f:
        magic = f.read(len(SQLITE_MAGIC))
    if magic != SQLITE_MAGIC:
        raise CopyError(f"source {src} is not a SQLite database")
    if not dst.parent.is_dir():
        raise CopyError(f"destination directory {dst.parent} does not exist")
    if dst.exists() and os.path.samefile(src, dst):
        raise CopyError(f"destination {dst} is the source itself")
    db_size = src.stat().st_size
    wal = _side(src, "-wal")
    wal_size = wal.stat().st_size if wal.exists() else 0
    needed = db_size + wal_size + needed_extra - reusable + SPACE_MARGIN
    free = shutil.disk_usage(dst.parent).free
    if free < needed:
        raise CopyError(
            f"not enough free space in {dst.parent}: {free} bytes free, {needed} needed "
            f"(database {db_size} + WAL {wal_size} + margin)"
        )
    return db_size, wal_size


def _wal_header(src: Path) -> bytes | None:
    """The WAL header (magic, checkpoint sequence, salts, checksum), or None if there is none.

    Salt-1 is incremented and salt-2 randomised every time the WAL is restarted, so the same header
    means the same WAL generation.
    """
    try:
        with open(_side(src, "-wal"), "rb") as f:
            header = f.read(WAL_HEADER_SIZE)
    except FileNotFoundError:
        return None
    return header if len(header) == WAL_HEADER_SIZE else None


# ---------------------------------------------------------------------------------------------
# The write lock on the source, through SQLite's C API


@functools.cache
def _libsqlite3() -> ctypes.CDLL:
    # The same shared library the sqlite3 module uses, so both agree on locking.
    name = ctypes.util.find_library("sqlite3") or "libsqlite3.so.0"
    lib = ctypes.CDLL(name)
    lib.sqlite3_open_v2.argtypes = [
        ctypes.c_char_p,
        ctypes.POINTER(ctypes.c_void_p),
        ctypes.c_int,
        ctypes.c_char_p,
    ]
    lib.sqlite3_exec.argtypes = [
        ctypes.c_void_p,
        ctypes.c_char_p,
        ctypes.c_void_p,
        ctypes.c_void_p,
        ctypes.c_void_p,
    ]
    lib.sqlite3_errmsg.argtypes = [ctypes.c_void_p]
    lib.sqlite3_errmsg.restype = ctypes.c_char_p
    lib.sqlite3_busy_timeout.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.sqlite3_close.argtypes = [ctypes.c_void_p]
    return lib


class _WriteLock:
    """`BEGIN IMMEDIATE` on the source, on a connection that never checkpoints on close."""

    def __init__(self, path: Path, timeout: float):
        self.lib = _libsqlite3()
        self.db = ctypes.c_void_p()
        rc = self.lib.sqlite3_open_v2(
            os.fsencode(path), ctypes.byref(self.db), _SQLITE_OPEN_READWRITE, None
        )
        if rc != _SQLITE_OK:
            self._fail(f"cannot open {path}")
        # sqlite3_db_config is variadic: (db, op, int onoff, int *result); SQLite writes the
        # setting now in force to *result, which we check rather than trust the call.
        now = ctypes.c_int(-1)
        rc = self.lib.sqlite3_db_config(
            self.db, _SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, ctypes.c_int(1), ctypes.byref(now)
        )
        if rc != _SQLITE_OK or now.value != 1:
            self._fail("cannot disable checkpoint-on-close")
        self.lib.sqlite3_busy_timeout(self.db, int(timeout * 1000))
        self.path = path

    def _exec(self, sql: str) -> int:
        return self.lib.sqlite3_exec(self.db, sql.encode(), None, None, None)

    def _fail(self, what: str):
        message = self.lib.sqlite3_errmsg(self.db).decode(errors="replace") if self.db else ""
        self.close()
        raise CopyError(f"{what}: {message}")

    def begin(self) -> None:
        if self._exec("BEGIN IMMEDIATE") != _SQLITE_OK:
            self._fail(f"could not take the write lock on {self.path}")

    def rollback(self) -> None:
        self._exec("ROLLBACK")

    def close(self) -> None:
        if self.db:
            self.lib.sqlite3_close(self.db)
            self.db = ctypes.c_void_p()


# ---------------------------------------------------------------------------------------------
# Byte moving


def _copy_range(src_fd: int, dst_fd: int, offset: int, length: int) -> int:
    """Copy [offset, offset+length) from src to the same offset in dst, in the kernel if possible.

    Stops early at the source's end of file (the source may have been truncated by a checkpoint).
    """
    done = 0
    try:
        while done < length:
            n = os.copy_file_range(src_fd, dst_fd, length - done, offset + done, offset + done)
            if n == 0:
                break
            done += n
        return done
    except OSError:
        pass  # e.g. no copy_file_range on this file system: fall back to read/write
    while done < length:
        chunk = os.pread(src_fd, min(BLOCK * 8, length - done), offset + done)
        if not chunk:
            break
        os.pwrite(dst_fd, chunk, offset + done)
        done += len(chunk)
    return done


def _compare_and_patch(src_fd: int, dst_fd: int, size: int, block: int) -> int:
    """Make dst's first `size` bytes equal to src's, rewriting only what differs.

    Reads in big blocks (few syscalls; a block compare is one memcmp), but writes page by page
    within a block that differs, since scattered row updates touch single pages all over the file.
    """
    written = 0
    a = bytearray(block)
    b = bytearray(block)
    offset = 0
    while offset < size:
        n = os.preadv(src_fd, [a], offset)
        if n == 0:
            break
        m = os.preadv(dst_fd, [b], offset)
        if n == m == block and a == b:
            offset += n
            continue
        view = memoryview(a)
        for start in range(0, n, PAGE):
            end = min(start + PAGE, n)
            if end > m or a[start:end] != b[start:end]:
                os.pwrite(dst_fd, view[start:end], offset + start)
                written += end - start
        offset += n
    os.ftruncate(dst_fd, offset)
    return written


def _copy_wal(src: Path, tmp: Path) -> tuple[int, int]:
    """Copy the source's -wal (if any) next to the temporary copy. Returns (wal size, written)."""
    try:
        wal_fd = os.open(_side(src, "-wal"), os.O_RDONLY)
    except FileNotFoundError:
        return 0, 0
    try:
        size = os.fstat(wal_fd).st_size
        if size == 0:
            return 0, 0
        out = os.open(_side(tmp, "-wal"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            written = _copy_range(wal_fd, out, 0, size)
        finally:
            os.close(out)
        return size, written
    finally:
        os.close(wal_fd)


def _fold_wal(tmp: Path, verify: bool) -> None:
    """Replay the copied WAL into the copy and remove it, so the copy is one self-contained file.

    This is the copy, never the source. The checkpoint writes at most the WAL's pages.
    """
    if not _side(tmp, "-wal").exists() and not verify:
        return
    conn = sqlite3.connect(tmp, isolation_level=None)
    try:
        if _side(tmp, "-wal").exists():
            busy, _log, _done = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            if busy:
                raise CopyError(f"could not checkpoint the copy {tmp}")
        if verify:
            result = conn.execute("PRAGMA integrity_check").fetchall()
            if result != [("ok",)]:
                raise CopyError(f"the copy fails integrity_check: {result[:5]}")
    finally:
        conn.close()
    _remove(_side(tmp, "-wal"), _side(tmp, "-shm"))


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _install(tmp: Path, dst: Path) -> None:
    """Durably replace dst with tmp. A stale -wal/-shm next to dst would be paired with the new
    file by SQLite (and its frames applied to the wrong database), so they go first."""
    _fsync_path(tmp)
    _remove(_side(dst, "-wal"), _side(dst, "-shm"))
    os.replace(tmp, dst)
    _fsync_path(dst.parent)


# ---------------------------------------------------------------------------------------------
# Public API


def precopy(src: str | os.PathLike, dst: str | os.PathLike) -> CopyResult:
    """Copy the bulk of `src` next to `dst` without any lock (possibly inconsistent), so that a
    later `consistent_copy(src, dst, reuse=True)` only has to fix up the differences."""
    started = time.perf_counter()
    src, dst = Path(src).absolute(), Path(dst).absolute()
    bulk, state = precopy_path(dst), _state_path(dst)
    _check(src, dst, reusable=bulk.stat().st_size if bulk.exists() else 0)
    _remove(state, _side(bulk, "-wal"), _side(bulk, "-shm"))
    # Read before the first byte of the main file is copied: if the WAL still has this header
    # when the lock is taken, every main-file write in between came from frames still in it.
    header = _wal_header(src)
    src_fd = os.open(src, os.O_RDONLY)
    try:
        source = os.fstat(src_fd)
        out = os.open(bulk, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            copied = _copy_range(src_fd, out, 0, source.st_size)
            # Flushed now, before writes are held, so the consistent copy's fsync only has the
            # few pages it rewrites to flush (writes stay held until the copy is installed).
            os.fsync(out)
        finally:
            os.close(out)
    finally:
        os.close(src_fd)
    copied_stat = bulk.stat()
    record = {
        "src": str(src),
        "dev": source.st_dev,
        "ino": source.st_ino,
        "wal_header": header.hex() if header else None,
        "size": copied_stat.st_size,
        "mtime_ns": copied_stat.st_mtime_ns,
    }
    state.write_text(json.dumps(record))
    return CopyResult(
        src=str(src),
        dst=str(bulk),
        mode="precopy",
        db_bytes=source.st_size,
        wal_bytes=0,
        bytes_copied=copied,
        bytes_under_lock=0,
        seconds=time.perf_counter() - started,
        lock_seconds=0.0,
        lock_wait_seconds=0.0,
        locked_at=0.0,
    )


# A child process, so that its SQLite locks are its own (the POSIX caveat above), killed rather
# than closed: a last connection that closes checkpoints into the source, which must stay as it is.
_HOLD_READS = """
import os, sqlite3, sys
connection = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
connection.execute("BEGIN")
connection.execute("SELECT count(*) FROM sqlite_master").fetchone()
print("held", flush=True)
sys.stdin.read()
os._exit(0)
"""


class ReadHold:
    """A read transaction on the live source, from before its precopy until its consistent copy
    (see "With the source's reads held" above). It ends when `end()` kills it, or when this
    process dies (its stdin closes)."""

    def __init__(self, src: str | os.PathLike):
        self.src = Path(src).absolute()
        self.process = subprocess.Popen(
            [sys.executable, "-c", _HOLD_READS, str(self.src)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        said = self.process.stdout.readline().strip()
        if said != "held":
            self.end()
            raise CopyError(f"could not hold reads on {self.src}")

    def alive(self) -> bool:
        return self.process.poll() is None

    def end(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        for stream in (self.process.stdin, self.process.stdout):
            stream.close()


def _same_wal(src: Path, record: dict) -> bool:
    """Whether the WAL is the generation the precopy saw (it was not restarted since)."""
    return bool(record["wal_header"]) and _wal_header(src) == bytes.fromhex(record["wal_header"])


def _take_state(src: Path, dst: Path, source: os.stat_result) -> dict | None:
    """The precopy's record if it still describes the precopy file and this source; consumed so
    that a failure half way through cannot leave a record that no longer matches the file."""
    state = _state_path(dst)
    try:
        record = json.loads(state.read_text())
    except (FileNotFoundError, ValueError):
        return None
    finally:
        _remove(state)
    try:
        bulk = precopy_path(dst).stat()
    except FileNotFoundError:
        return None
    if (
        record.get("src") != str(src)
        or record.get("dev") != source.st_dev
        or record.get("ino") != source.st_ino
        or record.get("size") != bulk.st_size
        or record.get("mtime_ns") != bulk.st_mtime_ns
    ):
        return None
    return record


def consistent_copy(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    reuse: bool = False,
    lock_timeout: float = 30.0,
    verify: bool = False,
    block_size: int = BLOCK,
    reads_held: ReadHold | None = None,
) -> CopyResult:
    """Copy the live database `src` to `dst` as of one instant (the moment the write lock is
    taken). With `reuse`, a precopy left by `precopy(src, dst)` is fixed up instead of copying
    everything under the lock, comparing `block_size` bytes at a time when it has to compare.
    `reads_held`, started before that precopy, makes the fix-up copy only the WAL; it is ended
    here once the lock is taken. With `verify`, the copy must pass `PRAGMA integrity_check`."""
    started = time.perf_counter()
    src, dst = Path(src).absolute(), Path(dst).absolute()
    bulk = precopy_path(dst)
    use_bulk = reuse and bulk.is_file()
    _check(src, dst, reusable=bulk.stat().st_size if use_bulk else 0)

    if use_bulk:
        tmp = bulk
    else:
        tmp = dst.with_name(f".{dst.name}.tmp-{os.getpid()}-{time.monotonic_ns()}")
    _remove(_side(tmp, "-wal"), _side(tmp, "-shm"))

    # Opened before the lock and closed only after the lock's connection (see the POSIX caveat).
    src_fd = os.open(src, os.O_RDONLY)
    lock = None
    try:
        source = os.fstat(src_fd)
        record = _take_state(src, dst, source) if use_bulk else None
        out = os.open(tmp, os.O_RDWR | os.O_CREAT | (0 if use_bulk else os.O_TRUNC), 0o644)
        try:
            lock = _WriteLock(src, lock_timeout)
            waited = time.perf_counter()
            lock.begin()
            locked = time.perf_counter()
            locked_at = time.monotonic()
            held = reads_held is not None and reads_held.alive()
            if reads_held is not None:
                reads_held.end()  # the write lock now keeps everything as it is
            try:
                db_size = os.fstat(src_fd).st_size
                if not use_bulk:
                    mode = "full"
                    main_written = _copy_range(src_fd, out, 0, db_size)
                elif record and (held or _same_wal(src, record)):
                    mode = "wal"
                    have = os.fstat(out).st_size
                    main_written = 0
                    if db_size > have:
                        main_written = _copy_range(src_fd, out, have, db_size - have)
                    os.ftruncate(out, db_size)
                else:
                    mode = "compare"
                    main_written = _compare_and_patch(src_fd, out, db_size, block_size)
                wal_size, wal_written = _copy_wal(src, tmp)
            finally:
                lock.rollback()
                lock.close()
                released = time.perf_counter()
        finally:
            os.close(out)
    except BaseException:
        if not use_bulk:
            _remove(tmp)
        _remove(_side(tmp, "-wal"), _side(tmp, "-shm"))
        raise
    finally:
        if lock is not None:
            lock.close()
        os.close(src_fd)

    try:
        _fold_wal(tmp, verify)
        _install(tmp, dst)
    except BaseException:
        _remove(tmp, _side(tmp, "-wal"), _side(tmp, "-shm"))
        raise
    under_lock = main_written + wal_written
    return CopyResult(
        src=str(src),
        dst=str(dst),
        mode=mode,
        db_bytes=db_size,
        wal_bytes=wal_size,
        bytes_copied=under_lock,
        bytes_under_lock=under_lock,
        seconds=time.perf_counter() - started,
        lock_seconds=released - locked,
        lock_wait_seconds=locked - waited,
        locked_at=locked_at,
    )


# ---------------------------------------------------------------------------------------------
# CLI: run on the host by the release machinery; one JSON object on stdout either way.


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="randopony-db-copy",
        description="Consistent copy of a live SQLite database (WAL mode).",
    )
    parser.add_argument("src")
    parser.add_argument("dst")
    parser.add_argument(
        "--precopy",
        action="store_true",
        help="only copy the bulk without a lock, before writes are held",
    )
    parser.add_argument(
        "--no-reuse",
        action="store_true",
        help="ignore a precopy and copy everything under the lock",
    )
    parser.add_argument("--verify", action="store_true", help="run integrity_check on the copy")
    parser.add_argument("--lock-timeout", type=float, default=30.0)
    args = parser.parse_args(argv)
    try:
        if args.precopy:
            result = precopy(args.src, args.dst)
        else:
            result = consistent_copy(
                args.src,
                args.dst,
                reuse=not args.no_reuse,
                lock_timeout=args.lock_timeout,
                verify=args.verify,
            )
    except (CopyError, OSError, sqlite3.Error) as exc:
        print(json.dumps({"error": str(exc), "src": args.src, "dst": args.dst}))
        return 1
    print(json.dumps(result.as_dict()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
