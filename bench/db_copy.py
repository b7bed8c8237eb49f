"""Benchmark deploy/db_copy.py against `cp` on a ~1 GB SQLite database in WAL mode.

    .venv/bin/python bench/db_copy.py [--size-mb 1024] [--rounds 3] [--dir DIR] [--keep]

Everything is measured in the same run and reported as a ratio to `cp` measured in that run
(speed ratio = cp seconds / method seconds, so > 1 is faster than cp). The rounds are interleaved
(cp, consistent copy, backup API, ... then again) so drift on a shared machine hits all methods
alike; medians of the rounds are reported. The source keeps a live connection (another process)
and a few MB of un-checkpointed WAL, as the old release's database has during a promotion.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deploy.host.db_copy import ReadHold, consistent_copy, precopy  # noqa: E402

ROW_TEXT = 960  # characters of random text per rider row: ~1 KB a row

HOLDER = r"""
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1])
conn.execute("SELECT count(*) FROM sqlite_schema").fetchone()
print("ready", flush=True)
sys.stdin.read()
"""


def build(path: Path, size_mb: int) -> None:
    """A riders-like table filled with random text. Built without a journal (much faster, and
    nothing else uses it yet), then switched to WAL like the site's databases."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=OFF")
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute(
        "CREATE TABLE riders (id INTEGER PRIMARY KEY, name TEXT, email TEXT, club TEXT, notes TEXT)"
    )
    conn.execute("CREATE INDEX riders_email ON riders (email)")
    batch = 50_000
    while path.stat().st_size < size_mb << 20:
        conn.execute(
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < ?)"
            " INSERT INTO riders (name, email, club, notes)"
            " SELECT hex(randomblob(8)), hex(randomblob(8)) || '@example.org',"
            " 'club ' || abs(random() % 50), hex(randomblob(?)) FROM c",
            (batch, ROW_TEXT // 2),
        )
    conn.execute("PRAGMA journal_mode=WAL")
    conn.close()


def change(src: Path, rows: int) -> None:
    """A few MB of registrations and edits spread over the file, left in the WAL."""
    conn = sqlite3.connect(src, isolation_level=None)
    top = conn.execute("SELECT max(id) FROM riders").fetchone()[0]
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO riders (name, email, club, notes) VALUES (?, ?, 'club 1', ?)",
        [(f"new {i}", f"new{i}@example.org", os.urandom(ROW_TEXT // 2).hex()) for i in range(rows)],
    )
    ids = [(random.randint(1, top),) for _ in range(rows)]
    conn.executemany("UPDATE riders SET club = 'moved' WHERE id = ?", ids)
    conn.execute("COMMIT")
    conn.close()


def timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def backup(src: Path, dst: Path) -> None:
    source, target = sqlite3.connect(src), sqlite3.connect(dst)
    try:
        source.backup(target)
    finally:
        target.close()
        source.close()


def checkpoint(db: Path, mode: str) -> None:
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA wal_checkpoint({mode})")
    conn.close()


def quick_check(db: Path) -> str:
    conn = sqlite3.connect(db)
    try:
        return conn.execute("PRAGMA quick_check").fetchone()[0]
    finally:
        conn.close()


def clean(*paths: Path) -> None:
    for path in paths:
        for suffix in ("", "-wal", "-shm"):
            Path(str(path) + suffix).unlink(missing_ok=True)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mb", type=int, default=None, help="default 1024 (500 if tight)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=None, help="reuse a database built here")
    parser.add_argument("--keep", action="store_true", help="keep the built database")
    args = parser.parse_args()

    base = args.dir or Path(tempfile.mkdtemp(prefix="bench-dbcopy-"))
    base.mkdir(parents=True, exist_ok=True)
    free_gb = shutil.disk_usage(base).free / 2**30
    size_mb = args.size_mb or (1024 if free_gb >= 4 else 500)
    print(f"# {base}: {free_gb:.1f} GiB free; database {size_mb} MB; {args.rounds} rounds")

    src = base / "source.db"
    if not src.exists() or src.stat().st_size < size_mb << 20:
        clean(src)
        print(f"build: {timed(lambda: build(src, size_mb)):.1f} s")
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(src)], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert holder.stdout.readline().strip() == b"ready"
    out = base / "copy.db"
    results: dict[str, list[float]] = {}
    locks: dict[str, list[float]] = {}
    under: dict[str, list[int]] = {}

    def note(name, seconds, lock=None, written=None):
        results.setdefault(name, []).append(seconds)
        if lock is not None:
            locks.setdefault(name, []).append(lock)
        if written is not None:
            under.setdefault(name, []).append(written)

    try:
        change(src, 2000)  # the live database has a WAL with recent writes
        db_bytes = src.stat().st_size
        wal_bytes = Path(f"{src}-wal").stat().st_size
        print(f"source: {db_bytes / 2**20:.0f} MiB + WAL {wal_bytes / 2**20:.1f} MiB")
        for r in range(args.rounds):
            note("cp", timed(lambda: subprocess.run(["cp", src, out], check=True)))
            clean(out)
            note("cp + fsync", timed(lambda: (subprocess.run(["cp", src, out]), fsync(out))))
            clean(out)
            # What a shell user does to have the copy on disk (issue 16's baseline).
            note("cp + sync", timed(lambda: subprocess.run(f"cp {src} {out} && sync", shell=True)))
            clean(out)
            res = consistent_copy(src, out)
            note("consistent_copy (cold)", res.seconds, res.lock_seconds, res.bytes_under_lock)
            clean(out)
            note("backup API", timed(lambda: backup(src, out)))
            clean(out)
            # The promotion's way: bulk before the hold, then only the changes under the lock.
            # A write first, so a WAL restart due from the last auto-checkpoint happens before the
            # precopy; then ~2 MB of writes that stay under the auto-checkpoint threshold, so the
            # WAL generation is unchanged at the hold and only the WAL is copied under the lock.
            change(src, 10)
            pre = precopy(src, out)
            note("precopy (no lock)", pre.seconds)
            change(src, 400)
            res = consistent_copy(src, out, reuse=True)
            assert res.mode == "wal", res.mode
            note("consistent_copy reuse, wal", res.seconds, res.lock_seconds, res.bytes_under_lock)
            clean(out)
            # Worst case for reuse: the WAL was restarted after the precopy (auto-checkpoints do
            # that every ~4 MB of writes), so every block is compared; ~6 MB of writes.
            precopy(src, out)
            checkpoint(src, "TRUNCATE")
            change(src, 3000)
            res = consistent_copy(src, out, reuse=True)
            assert res.mode == "compare", res.mode
            name = "consistent_copy reuse, compare"
            note(name, res.seconds, res.lock_seconds, res.bytes_under_lock)
            assert quick_check(out) == "ok"
            clean(out)
            # The same history with the source's reads held from before the precopy (the
            # cutover agent's way): only the WAL is copied under the lock, restart or not.
            checkpoint(src, "PASSIVE")
            reads = ReadHold(src)
            precopy(src, out)
            change(src, 3000)
            res = consistent_copy(src, out, reuse=True, reads_held=reads)
            assert res.mode == "wal", res.mode
            name = "consistent_copy reuse, reads held"
            note(name, res.seconds, res.lock_seconds, res.bytes_under_lock)
            assert quick_check(out) == "ok"
            clean(out)
            # The WAL that grew while reads were held goes, so the next round starts as this one.
            checkpoint(src, "TRUNCATE")
            change(src, 2000)
            print(f"round {r + 1} done", flush=True)
    finally:
        holder.stdin.close()
        holder.wait()
        clean(out)
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)

    cp = statistics.median(results["cp"])
    cp_sync = statistics.median(results["cp + sync"])
    print()
    print(
        "| method | median s (runs) | speed vs cp | vs cp + sync | lock held s "
        "| written under lock |"
    )
    print("|---|---|---|---|---|---|")
    for name, runs in results.items():
        runs_text = ", ".join(f"{x:.2f}" for x in runs)
        lock = f"{statistics.median(locks[name]):.3f}" if name in locks else "-"
        written = f"{statistics.median(under[name]) / 2**20:.1f} MiB" if name in under else "-"
        median = statistics.median(runs)
        print(
            f"| {name} | {median:.2f} ({runs_text}) | {cp / median:.2f}x "
            f"| {cp_sync / median:.2f}x | {lock} | {written} |"
        )
    cold = statistics.median(results["consistent_copy (cold)"])
    print(
        f"RESULT cold_vs_cp_sync={cp_sync / cold:.2f} cold_vs_cp={cp / cold:.2f} "
        f"lock_reads_held_s={statistics.median(locks['consistent_copy reuse, reads held']):.3f} "
        f"lock_compare_s={statistics.median(locks['consistent_copy reuse, compare']):.3f} "
        f"size_mib={db_bytes / 2**20:.0f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
