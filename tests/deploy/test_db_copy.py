"""deploy/db_copy.py against real SQLite files with real concurrent writers in other processes.

Every copy is checked by opening it: `PRAGMA integrity_check`, the rows, and the invariant that each
writer's transaction (a numbered row plus its counter) is either wholly in the copy or not at all.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sqlite3
import subprocess
import sys
import time
from collections import namedtuple
from pathlib import Path

import pytest

from deploy.host import db_copy
from deploy.host.db_copy import CopyError, consistent_copy, precopy, precopy_path
from tests.conftest import ROOT

PAYLOAD = 1000
BLOCK = 64 << 10  # compare blocks small enough that a few-MB test file has many

# A writer process: each transaction inserts row (writer, n) and sets the writer's counter to n,
# then logs "n monotonic-time" once COMMIT has returned, i.e. once the row is committed.
WRITER = r"""
import hashlib, sqlite3, sys, time
db, log, writer, autocheckpoint = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
conn = sqlite3.connect(db, isolation_level=None, timeout=30)
conn.execute("PRAGMA synchronous=NORMAL")
conn.execute(f"PRAGMA wal_autocheckpoint={autocheckpoint}")
out = open(log, "a", buffering=1)
n = 0
while True:
    n += 1
    payload = (hashlib.sha256(f"{writer}:{n}".encode()).digest() * 40)[:1000]
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("INSERT INTO rows(writer, n, payload) VALUES (?, ?, ?)", (writer, n, payload))
    conn.execute("UPDATE counters SET last = ? WHERE writer = ?", (n, writer))
    conn.execute("COMMIT")
    out.write(f"{n} {time.monotonic()}\n")
"""

# Opens and closes connections and asks for PASSIVE checkpoints all the time, so checkpoints
# write into the source's main file while it is being copied.
CHECKPOINTER = r"""
import sqlite3, sys
while True:
    conn = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
    conn.execute("SELECT count(*) FROM rows").fetchone()
    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    conn.close()
"""

# Keeps a connection open (so nobody's close checkpoints and deletes the WAL), optionally inside a
# read transaction (a snapshot, so checkpoints cannot get past it), until its stdin closes.
HOLDER = r"""
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
if sys.argv[2] == "snapshot":
    conn.execute("BEGIN")
conn.execute("SELECT count(*) FROM rows").fetchone()
if sys.argv[2] == "write":
    conn.execute("BEGIN IMMEDIATE")
print("ready", flush=True)
sys.stdin.read()
"""


def expected_payload(writer: int, n: int) -> bytes:
    return (hashlib.sha256(f"{writer}:{n}".encode()).digest() * 40)[:PAYLOAD]


def make_db(path: Path, rows: int = 3000) -> Path:
    """A WAL database of about `rows` KB; writer 0 holds the initial rows."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(
        "CREATE TABLE rows (writer INTEGER, n INTEGER, payload BLOB, PRIMARY KEY (writer, n))"
    )
    conn.execute("CREATE TABLE counters (writer INTEGER PRIMARY KEY, last INTEGER)")
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO rows VALUES (0, ?, ?)", [(n, expected_payload(0, n)) for n in range(1, rows)]
    )
    conn.executemany("INSERT INTO counters VALUES (?, ?)", [(0, rows - 1), (1, 0), (2, 0)])
    conn.execute("COMMIT")
    conn.close()
    return path


def start(script: str, *args) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", script, *map(str, args)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def hold(db: Path, how: str = "open") -> subprocess.Popen:
    proc = start(HOLDER, db, how)
    assert proc.stdout.readline().strip() == "ready"
    return proc


def release(proc: subprocess.Popen) -> None:
    proc.stdin.close()
    proc.wait(timeout=10)


def stop(*procs: subprocess.Popen) -> None:
    for proc in procs:
        proc.kill()
    for proc in procs:
        proc.wait(timeout=10)


def integrity(db: Path) -> str:
    conn = sqlite3.connect(db)
    try:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        conn.close()


def contents(db: Path) -> tuple[list, list]:
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute("SELECT writer, n, payload FROM rows ORDER BY writer, n").fetchall()
        counters = conn.execute("SELECT writer, last FROM counters ORDER BY writer").fetchall()
        return rows, counters
    finally:
        conn.close()


def check_transactions(db: Path) -> dict[int, int]:
    """Each writer's rows are exactly 1..last with the right payloads, where `last` is its
    counter, written in the same transaction: no transaction is half in the copy."""
    rows, counters = contents(db)
    by_writer: dict[int, list[int]] = {}
    for writer, n, payload in rows:
        assert payload == expected_payload(writer, n), (writer, n)
        by_writer.setdefault(writer, []).append(n)
    last = dict(counters)
    for writer, top in last.items():
        assert by_writer.get(writer, []) == list(range(1, top + 1)), writer
    return last


def committed_before(log: Path, instant: float) -> int:
    """The highest n whose COMMIT had returned before `instant` (complete log lines only)."""
    best = 0
    for line in log.read_text().splitlines(keepends=True):
        if not line.endswith("\n"):
            break
        n, when = line.split()
        if float(when) < instant:
            best = max(best, int(n))
    return best


def wait_committed(log: Path, beyond: int, timeout: float = 60) -> None:
    """Until the writer logging to `log` has committed a transaction numbered above `beyond`."""
    deadline = time.monotonic() + timeout
    while not log.exists() or committed_before(log, math.inf) <= beyond:
        assert time.monotonic() < deadline, f"{log.name}: no commit past {beyond} in {timeout} s"
        time.sleep(0.02)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def kill_after_writes(db: Path, rows: int) -> None:
    """Commit `rows` rows in a process that is then killed, so its WAL is left un-checkpointed
    and no connection is open: the state a crashed or stopped app leaves behind."""
    script = r"""
import hashlib, os, signal, sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
for n in range(1, int(sys.argv[2]) + 1):
    payload = (hashlib.sha256(f"1:{n}".encode()).digest() * 40)[:1000]
    conn.execute("INSERT INTO rows VALUES (1, ?, ?)", (n, payload))
    conn.execute("UPDATE counters SET last = ? WHERE writer = 1", (n,))
os.kill(os.getpid(), signal.SIGKILL)
"""
    subprocess.run([sys.executable, "-c", script, str(db), str(rows)], check=False)


# ---------------------------------------------------------------------------------------------


def test_copies_under_concurrent_writers_and_checkpoints(tmp_path):
    src = make_db(tmp_path / "src.db")
    logs = [tmp_path / "w1.log", tmp_path / "w2.log"]
    writers = [start(WRITER, src, logs[0], 1, 50), start(WRITER, src, logs[1], 2, 200)]
    checkpointer = start(CHECKPOINTER, src)
    try:
        for log in logs:
            wait_committed(log, 0)
        for i in range(8):
            dst = tmp_path / f"copy{i}.db"
            result = consistent_copy(src, dst)
            assert result.mode == "full"
            assert integrity(dst) == "ok"
            last = check_transactions(dst)
            for writer, log in zip((1, 2), logs, strict=True):
                # Every transaction committed before the lock was taken is in the copy.
                assert last[writer] >= committed_before(log, result.locked_at)
            assert last[1] > 0 and last[2] > 0
            assert not (tmp_path / f"copy{i}.db-wal").exists()
        assert all(w.poll() is None for w in writers), "a writer died"
        # The writers go on committing after the copies (they were only held, never broken).
        wait_committed(logs[0], last[1])
    finally:
        stop(*writers, checkpointer)


def test_uncheckpointed_wal_frames_are_in_the_copy(tmp_path):
    src = make_db(tmp_path / "src.db")
    reader = hold(src, "snapshot")
    try:
        conn = sqlite3.connect(src, isolation_level=None)
        for n in range(1, 301):
            conn.execute("INSERT INTO rows VALUES (1, ?, ?)", (n, expected_payload(1, n)))
            conn.execute("UPDATE counters SET last = ? WHERE writer = 1", (n,))
        _busy, log_frames, checkpointed = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        conn.close()  # the reader's connection keeps the WAL from being checkpointed on close
        # The reader's snapshot stops the checkpoint short of the latest frames.
        assert checkpointed < log_frames
        result = consistent_copy(src, tmp_path / "copy.db")
    finally:
        release(reader)
    assert result.wal_bytes > 0
    assert integrity(tmp_path / "copy.db") == "ok"
    assert check_transactions(tmp_path / "copy.db")[1] == 300


def test_the_source_is_not_modified(tmp_path):
    src = make_db(tmp_path / "src.db")
    kill_after_writes(src, 200)
    wal = tmp_path / "src.db-wal"
    assert wal.stat().st_size > 0
    before = (sha(src), src.stat().st_mtime_ns, sha(wal), wal.stat().st_mtime_ns)
    consistent_copy(src, tmp_path / "copy.db")
    precopy(src, tmp_path / "again.db")
    consistent_copy(src, tmp_path / "again.db", reuse=True)
    # Our connection was the last one on the source: without SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE
    # closing it would have checkpointed the WAL into the source and deleted the WAL.
    assert (sha(src), src.stat().st_mtime_ns, sha(wal), wal.stat().st_mtime_ns) == before
    for copy in ("copy.db", "again.db"):
        assert integrity(tmp_path / copy) == "ok"
        assert check_transactions(tmp_path / copy)[1] == 200


@pytest.fixture
def live(tmp_path):
    """A ~4 MB source with a connection held open elsewhere (as the old release does)."""
    src = make_db(tmp_path / "src.db", rows=4000)
    holder = hold(src)
    conn = sqlite3.connect(src, isolation_level=None)
    yield src, conn
    conn.close()
    release(holder)


def write(conn: sqlite3.Connection, first: int, count: int) -> None:
    conn.execute("BEGIN")
    for n in range(first, first + count):
        conn.execute("INSERT INTO rows VALUES (1, ?, ?)", (n, expected_payload(1, n)))
        conn.execute("UPDATE counters SET last = ? WHERE writer = 1", (n,))
    # Rewrite two old rows too, so pages at the start and in the middle of the file change.
    conn.execute("UPDATE rows SET payload = payload WHERE writer = 0 AND n IN (5, 2000)")
    conn.execute("COMMIT")


def assert_same_as_fresh(tmp_path, src: Path, dst: Path, result) -> None:
    fresh = tmp_path / "fresh.db"
    consistent_copy(src, fresh)
    assert integrity(dst) == "ok"
    assert contents(dst) == contents(fresh)
    check_transactions(dst)
    # Only the changes were written under the lock, not the bulk.
    assert result.bytes_under_lock < result.db_bytes / 4, result
    assert not precopy_path(dst).exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_reuse_with_checkpoints_in_the_same_wal_generation_copies_only_the_wal(tmp_path, live):
    src, conn = live
    write(conn, 1, 20)
    dst = tmp_path / "copy.db"
    pre = precopy(src, dst)
    assert pre.bytes_copied == src.stat().st_size
    write(conn, 21, 50)
    conn.execute("PRAGMA wal_checkpoint(PASSIVE)")  # writes the new pages into the main file
    assert sha(src) != sha(precopy_path(dst))  # so the precopy is stale
    result = consistent_copy(src, dst, reuse=True, block_size=BLOCK)
    assert result.mode == "wal"
    assert check_transactions(dst)[1] == 70
    assert_same_as_fresh(tmp_path, src, dst, result)


def test_reuse_after_a_wal_restart_compares_blocks(tmp_path, live):
    src, conn = live
    write(conn, 1, 20)
    dst = tmp_path / "copy.db"
    precopy(src, dst)
    write(conn, 21, 30)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # new WAL generation: "wal" mode not safe
    write(conn, 51, 30)
    result = consistent_copy(src, dst, reuse=True, block_size=BLOCK)
    assert result.mode == "compare"
    assert 0 < result.bytes_under_lock
    assert check_transactions(dst)[1] == 80
    assert_same_as_fresh(tmp_path, src, dst, result)


def test_held_reads_keep_the_wal_mode_across_a_wal_restart(tmp_path, live):
    """A read started when the WAL was all checkpointed reads the main file alone: no checkpoint
    may write into it while the read lasts, so the precopy stays exact even though the WAL
    restarts at the next write."""
    src, conn = live
    write(conn, 1, 20)
    conn.execute("PRAGMA wal_checkpoint(PASSIVE)")  # every frame in the main file: mark 0
    dst, unheld = tmp_path / "copy.db", tmp_path / "unheld.db"
    reads = db_copy.ReadHold(src)
    precopy(src, dst)
    precopy(src, unheld)
    write(conn, 21, 30)  # restarts the WAL: a new generation
    conn.execute("PRAGMA wal_checkpoint(PASSIVE)")  # may not write into the main file
    write(conn, 51, 30)
    result = consistent_copy(src, dst, reuse=True, block_size=BLOCK, reads_held=reads)
    assert result.mode == "wal"
    assert not reads.alive()
    assert check_transactions(dst)[1] == 80
    # The same history without the held reads: the WAL's header changed, so blocks are compared.
    assert consistent_copy(src, unheld, reuse=True, block_size=BLOCK).mode == "compare"
    assert_same_as_fresh(tmp_path, src, dst, result)


def test_held_reads_through_the_wal_keep_it_from_restarting(tmp_path, live):
    src, conn = live
    write(conn, 1, 20)  # frames in the WAL, not checkpointed: the read gets a mark above 0
    dst = tmp_path / "copy.db"
    reads = db_copy.ReadHold(src)
    precopy(src, dst)
    write(conn, 21, 30)
    conn.execute("PRAGMA wal_checkpoint(PASSIVE)")  # up to the held read's mark only
    busy = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
    assert busy == 1  # the held read keeps the WAL from being reset
    write(conn, 51, 30)
    result = consistent_copy(src, dst, reuse=True, block_size=BLOCK, reads_held=reads)
    assert result.mode == "wal"
    assert check_transactions(dst)[1] == 80
    assert_same_as_fresh(tmp_path, src, dst, result)


def test_a_read_hold_that_died_is_not_trusted(tmp_path, live):
    src, conn = live
    write(conn, 1, 20)
    conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
    dst = tmp_path / "copy.db"
    reads = db_copy.ReadHold(src)
    precopy(src, dst)
    reads.process.kill()
    reads.process.wait()
    write(conn, 21, 30)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    write(conn, 51, 30)
    result = consistent_copy(src, dst, reuse=True, block_size=BLOCK, reads_held=reads)
    assert result.mode == "compare"
    assert check_transactions(dst)[1] == 80
    assert_same_as_fresh(tmp_path, src, dst, result)


def test_reuse_repairs_a_damaged_precopy(tmp_path, live):
    src, conn = live
    write(conn, 1, 10)
    dst = tmp_path / "copy.db"
    precopy(src, dst)
    with open(precopy_path(dst), "r+b") as f:  # as if torn mid-write: garbage in three blocks
        for block in (0, 1, 3):
            f.seek(block * BLOCK + 100)
            f.write(os.urandom(5000))
    result = consistent_copy(src, dst, reuse=True, block_size=BLOCK)
    assert result.mode == "compare"
    assert result.bytes_under_lock >= 3 * 5000  # the damaged pages were rewritten
    assert_same_as_fresh(tmp_path, src, dst, result)


def test_rollback_journal_database_and_stale_wal_at_destination(tmp_path):
    src = tmp_path / "src.db"
    conn = sqlite3.connect(src, isolation_level=None)
    conn.execute("CREATE TABLE rows (writer INTEGER, n INTEGER, payload BLOB)")
    conn.execute("CREATE TABLE counters (writer INTEGER PRIMARY KEY, last INTEGER)")
    conn.execute("INSERT INTO counters VALUES (1, 1)")
    conn.execute("INSERT INTO rows VALUES (1, 1, ?)", (expected_payload(1, 1),))
    conn.close()
    dst = tmp_path / "copy.db"
    dst.write_bytes(b"old")
    (tmp_path / "copy.db-wal").write_bytes(os.urandom(4096))  # would be paired with the new file
    (tmp_path / "copy.db-shm").write_bytes(os.urandom(4096))
    consistent_copy(src, dst)
    assert not (tmp_path / "copy.db-wal").exists()
    assert integrity(dst) == "ok"
    assert check_transactions(dst) == {1: 1}


def test_waits_for_the_write_lock_and_gives_up_clearly(tmp_path):
    src = make_db(tmp_path / "src.db", rows=10)
    writer = hold(src, "write")
    try:
        before = sorted(tmp_path.iterdir())
        with pytest.raises(CopyError, match="could not take the write lock"):
            consistent_copy(src, tmp_path / "copy.db", lock_timeout=0.2)
        assert sorted(tmp_path.iterdir()) == before
    finally:
        release(writer)


Usage = namedtuple("Usage", "total used free")


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing", "does not exist"),
        ("not_a_db", "is not a SQLite database"),
        ("no_dir", "destination directory .* does not exist"),
        ("no_space", "not enough free space"),
    ],
)
def test_refusals_leave_nothing_behind(tmp_path, monkeypatch, case, message):
    src = make_db(tmp_path / "src.db", rows=10)
    out = tmp_path / "out"
    out.mkdir()
    dst = out / "copy.db"
    if case == "missing":
        src = tmp_path / "nope.db"
    elif case == "not_a_db":
        src = tmp_path / "notes.txt"
        src.write_text("hello, not a database\n" * 10)
    elif case == "no_dir":
        dst = tmp_path / "missing" / "copy.db"
    else:
        monkeypatch.setattr(db_copy.shutil, "disk_usage", lambda path: Usage(10**9, 0, 10_000))
    for attempt in (lambda: consistent_copy(src, dst), lambda: precopy(src, dst)):
        with pytest.raises(CopyError, match=message):
            attempt()
    assert list(out.iterdir()) == []
    assert not (tmp_path / "missing").exists()


def test_cli_prints_json(tmp_path):
    src = make_db(tmp_path / "src.db", rows=500)
    dst = tmp_path / "copy.db"

    def cli(*args):
        done = subprocess.run(
            [sys.executable, "-m", "deploy.host.db_copy", *map(str, args)],
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
        return done.returncode, json.loads(done.stdout)

    code, pre = cli(src, dst, "--precopy")
    assert code == 0 and pre["mode"] == "precopy" and pre["lock_seconds"] == 0
    code, out = cli(src, dst, "--verify")
    assert code == 0
    assert out["mode"] in ("wal", "compare")
    for key in ("bytes_copied", "bytes_under_lock", "seconds", "lock_seconds", "db_bytes"):
        assert isinstance(out[key], int | float)
    assert contents(dst)[1] == [(0, 499), (1, 0), (2, 0)]
    code, err = cli(tmp_path / "nope.db", dst)
    assert code == 1 and "does not exist" in err["error"]
