"""Benchmark: `fab sync_staging` (a sanitised refresh of staging from production) for production
databases of growing size, against `cp` of the same database file measured in the same run.

    .venv/bin/python bench/sync.py [--sizes 10,100,1024] [--list-every 100] [--no-load]
        [--json OUT]

A temporary host (panel, router and a mail sink under supervisord, on free ports: bench/promote.py's
BenchHost) gets release 2026r1 in production with the demo events and 2026r2 as staging. Then, for
each size in turn, production's database is grown while it serves with past brevets and
populaires full of riders (distinct names and addresses, free-text comments and answers of
varying length, some holding an address or a link to the production site: what the sanitiser has
to rewrite), one event in --list-every gets its rider lists written by the app's own code
(app/rider_lists.py: an XLSX and a CSV), and:

1. `cp` of production's database file (a first one, reported apart: see cp_round), again, and
   `cp` + fsync of the copy;
2. `fab sync_staging`, run as a maintainer runs it (the checkout's .venv/bin/fab against this
   host), while a light read load (one client looping GETs of the demo event pages through the
   router) counts failed reads on production;
3. the same copies again.

The sanitise step's phases are the sanitiser's own (`sanitize_seconds` in the sync's line of the
host's deploy/releases.log: planning, the parts written by its workers while it writes the rider
lists, merging them, the final scan, the reports and the rename).

The peak disk the sync needs is sampled while it runs (DiskSampler).

The sizes accumulate on one database (10 MB, then grown to 100 MB, then to 1 GB), as a production
database grows between nightly syncs; the rider list mirror is kept between syncs, as on a host.
Per size: the sync's wall time, its per-step durations (`steps` in the `sync_staging` line of the
host's deploy/releases.log), the ratio to cp, and the growth in seconds per 100 MB. The last
line is `RESULT ...`: per size, the sync's seconds, the sanitise step's and the sync over cp +
fsync measured in the same run. Everything lives in temporary directories, removed at the end
(also on failure, Ctrl-C or SIGTERM).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(CHECKOUT))

from bench.db_copy import clean, fsync, timed  # noqa: E402
from bench.promote import (  # noqa: E402
    DB,
    DOMAIN,
    R1,
    R2,
    BenchHost,
    Probe,
    check_ports,
    discover,
    other_hosts,
    say,
)

STEPS = ("prepare_work", "copy_database", "migrate_copy", "mirror_files", "sanitize", "swap_in")

# --- Riders -------------------------------------------------------------------------------------

FIRST = (
    "Ada Alex Alice Amir Anna Ben Bruno Carla Chen Chris Dana David Diego Elena Emma Eric Fatima "
    "Felix Grace Hana Hugo Ian Ines Jack Jana Jin Joao Karen Kenji Lars Laura Leo Lin Lucia Maya "
    "Mei Mike Nadia Noah Nora Olga Omar Pat Paul Priya Quinn Raj Rosa Ruth Sam Sara Sean Sofia "
    "Tara Tom Uma Vera Victor Wei Yara Zoe"
).split()
LAST = (
    "Anderson Bergeron Brown Campbell Chan Clarke Cote Davies Dubois Fischer Fraser Gagnon Garcia "
    "Gill Gomez Grant Hall Harris Ito Jensen Khan Kim Kowalski Lam Larsen Leblanc Lee Li MacDonald "
    "Martin Mason Muller Murphy Nguyen Novak Olsen Park Patel Pearson Reid Roberts Ross Roy Sandhu "
    "Schmidt Scott Singh Smith Stewart Tanaka Taylor Thomas Tremblay Wang Watson White Wilson Wong "
    "Young Zhang"
).split()
MAIL_DOMAINS = (
    "gmail.com gmail.com gmail.com shaw.ca telus.net hotmail.com yahoo.ca outlook.com icloud.com "
    "sfu.ca ubc.ca bcrandonneurs.ca proton.me uvic.ca"
).split()
WORDS = (
    "ride riding bike wheel tire chain climb descent rain wind headwind tailwind night lights "
    "control card brevet permanent randonneur club route cue sheet hill coffee bakery ferry "
    "start finish early late tent hotel friend partner tandem fender bag drop spare tube pump "
    "first second last season years since training please thanks see you there will bring "
    "my our the a with for and to at on after before about"
).split()
BIKES = ["single"] * 12 + ["tandem", "fixie", "single-speed", "recumbent", "velomobile", "other"]
ROUTES = "Seymour Squamish Harrison Hope Fraser Valley Sunshine Coast Island Okanagan".split()
REGIONS = ("LM", "VI", "PR", "SI")
DISTANCES = (200, 300, 400, 600, 1000, 1200)


def sentence(rng: random.Random, low: int, high: int) -> str:
    text = " ".join(rng.choices(WORDS, k=rng.randint(low, high)))
    return text[:1].upper() + text[1:] + "."


class Text:
    """Riders' free text, made from a pool of sentences (so growing 1 GB takes seconds of Python,
    not minutes): distinct comments and answers of varying length, about one comment in six
    holding an address or a link to the production site."""

    def __init__(self, rng: random.Random):
        self.rng, self.rand = rng, rng.random
        self.sentences = [sentence(rng, 3, 14) for _ in range(20000)]

    def pick(self, seq):
        return seq[int(self.rand() * len(seq))]

    def address(self, first: str, last: str, n: int) -> str:
        return f"{first[0]}{last}.{n}@{self.pick(MAIL_DOMAINS)}".lower()

    def comment(self, n: int) -> str | None:
        pick = self.rand()
        if pick < 0.5:
            return None  # half the riders leave no comment
        if pick < 0.58:
            first, last = self.pick(FIRST), self.pick(LAST)
            buddy = self.address(first, last, n + 7)
            return f"Riding with {first} {last} ({buddy}). " + self.pick(self.sentences)
        if pick < 0.63:
            return f"Results of my last one: http://{DOMAIN}/brevets/LM/200/{n % 28 + 1:02d}Jun2025"
        count = self.pick((1, 1, 1, 2, 3, 6))
        return " ".join(self.rng.choices(self.sentences, k=count))[:500]

    def info_answer(self, n: int) -> str:
        pick = self.rand()
        if pick < 0.6:
            return self.pick(("Yes", "No", "Vegetarian", "Chicken", "No thanks"))
        if pick < 0.7:
            return f"Please send the cue sheet to {self.address(self.pick(FIRST), 'cue', n)}"
        return self.pick(self.sentences)


class RiderGrower:
    """Grows the live production database with past events and their riders, in transactions of
    a few events, so the app's own writes can interleave; notes which events got rider lists."""

    def __init__(self, database: Path, lists_dir: Path, list_every: int, seed: int = 6):
        self.database, self.lists_dir, self.list_every = database, lists_dir, list_every
        self.rng = random.Random(seed)
        self.text = Text(self.rng)
        self.events = 0
        self.riders = 0
        self.listed: list[tuple[str, int]] = []  # (kind, id) of events given rider lists
        # Past events, one every 11 hours back from 2025: never on the current lists.
        self.clock = datetime(2025, 6, 1, 7, 0)

    def grow(self, size_mb: int) -> float:
        started = time.monotonic()
        conn = sqlite3.connect(self.database, isolation_level=None, timeout=60)
        new_lists = []
        try:
            page = conn.execute("PRAGMA page_size").fetchone()[0]
            while conn.execute("PRAGMA page_count").fetchone()[0] * page < size_mb << 20:
                conn.execute("BEGIN IMMEDIATE")
                for _ in range(4):
                    kind, event_id = self.add_event(conn)
                    if self.events % self.list_every == 0:
                        new_lists.append((kind, event_id))
                conn.execute("COMMIT")
            # Into the file, but the WAL is not truncated: a live production database keeps its
            # WAL between checkpoints. (An empty WAL makes the sync's snapshot compare the whole
            # file under production's write lock: see BENCHMARKS.md.)
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        finally:
            conn.close()
        self.write_rider_lists(new_lists)
        self.listed += new_lists
        return time.monotonic() - started

    def add_event(self, conn: sqlite3.Connection) -> tuple[str, int]:
        rng = self.rng
        self.events += 1
        n = self.events
        self.clock -= timedelta(hours=11)
        start = self.clock
        organizers = ", ".join(
            self.text.address(rng.choice(FIRST), rng.choice(LAST), n)
            for _ in range(rng.randint(1, 2))
        )
        common = {
            "date_time": str(start),
            "start_locn": f"{rng.choice(ROUTES)} {rng.choice(('Tim Hortons', 'Cafe', 'Park'))}",
            "start_map_url": rng.choice((None, None, f"https://maps.example.net/?q={n}")),
            "organizer_email": organizers,
            "registration_end": str(start - timedelta(hours=19)),
            "uuid": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        }
        brevet = n % 3 != 0
        if brevet:
            kind, table, riders_table = "brevet", "brevets", "brevet_riders"
            row = {
                **common,
                "region": rng.choice(REGIONS),
                "distance": rng.choice(DISTANCES),
                "route_name": f"{rng.choice(ROUTES)} {rng.choice(('Loop', 'Classic', 'Hills'))}",
                "info_question": rng.choice((None, None, None, "Meal at the finish?")),
            }
        else:
            kind, table, riders_table = "populaire", "populaires", "populaire_riders"
            row = {
                **common,
                "event_name": f"{rng.choice(ROUTES)} Populaire {start.year}",
                "short_name": f"pop{n}",
                "distance": rng.choice(("25 km, 50 km", "50 km, 100 km", "100 km")),
                "entry_form_url": rng.choice((None, f"http://{DOMAIN}/populaires/pop{n}")),
            }
        columns = ", ".join(row)
        marks = ", ".join("?" * len(row))
        event_id = conn.execute(
            f"INSERT INTO {table} ({columns}) VALUES ({marks})", tuple(row.values())
        ).lastrowid
        asks = brevet and row["info_question"] is not None
        text, rand, pick = self.text, self.rng.random, self.text.pick
        riders = []
        for _ in range(rng.randint(100, 700)):
            self.riders += 1
            r = self.riders
            first, last = pick(FIRST), pick(LAST)
            if rand() < 0.15:
                last += "-" + pick(LAST)
            registered = start - timedelta(minutes=int(rand() * 86400) + 60)
            values = [event_id, text.address(first, last, r), first, last, text.comment(r)]
            values.append(registered.strftime("%Y-%m-%d %H:%M:00.000000"))
            if brevet:
                member = pick((True, True, True, False, None))
                values += [pick(BIKES), member, text.info_answer(r) if asks else None]
            riders.append(values)
        if brevet:
            columns = "brevet_id, email, first_name, last_name, comment, registered_at, "
            columns += "bike_type, member_status, info_answer"
        else:
            columns = "populaire_id, email, first_name, last_name, comment, registered_at, distance"
            riders = [values + [pick(("25", "50", "100"))] for values in riders]
        marks = ", ".join("?" * len(riders[0]))
        conn.executemany(f"INSERT INTO {riders_table} ({columns}) VALUES ({marks})", riders)
        return kind, event_id

    def write_rider_lists(self, events: list[tuple[str, int]]) -> None:
        """The files the app writes after each sign-up, with its own code (app/rider_lists.py)."""
        if not events:
            return
        from sqlalchemy import create_engine
        from sqlalchemy.orm import Session

        from app.rider_lists import KINDS, write_rider_list

        settings = {"rider_lists_dir": str(self.lists_dir)}
        engine = create_engine(f"sqlite:///{self.database}")
        try:
            with Session(engine) as session:
                for kind, event_id in events:
                    write_rider_list(settings, session.get(KINDS[kind], event_id))
        finally:
            engine.dispose()


def lists_size(directory: Path) -> tuple[int, int]:
    files = [path for path in directory.glob("*") if path.is_file()]
    return len(files), sum(path.stat().st_size for path in files)


# --- Measuring ----------------------------------------------------------------------------------


def fab_sync_staging(host: BenchHost, timeout: float) -> str:
    """`fab sync_staging` as BenchHost.fab runs fab (the checkout's, as a maintainer does), with a
    time limit of its own (BenchHost.fab stops at 900 s, about what sanitising 1 GB takes here),
    in a process group of its own that is killed whole if the bench stops before it ends, so no
    sanitiser is left writing into the host root being removed."""
    env = dict(host.env, RANDOPONY_STAGING_RELEASE=R2, RANDOPONY_PRODUCTION_RELEASE=R1)
    fab = subprocess.Popen(
        [str(Path(sys.executable).parent / "fab"), "sync_staging"],
        cwd=CHECKOUT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = fab.communicate(timeout=timeout)
    except BaseException:
        os.killpg(fab.pid, signal.SIGKILL)
        fab.wait()
        raise
    if fab.returncode != 0:
        raise RuntimeError(
            f"fab sync_staging failed (exit {fab.returncode}):\n{stdout[-3000:]}\n{stderr[-3000:]}"
        )
    return stdout


class DiskSampler(threading.Thread):
    """The sync's work directory (staging's sync/: snapshot, its WAL, the rider lists) and the
    file system's free space, sampled four times a second: the peak disk the sync needs. The
    free space also moves with anything else on the machine, and SQLite's VACUUM builds its
    temporary copy in an unlinked file that only the free space shows."""

    def __init__(self, work: Path):
        super().__init__(daemon=True)
        self.work = work
        self.stopping = threading.Event()
        self.peak_work = 0
        self.free_at_start = shutil.disk_usage(work.parent).free
        self.lowest_free = self.free_at_start

    def run(self) -> None:
        while not self.stopping.wait(0.25):
            total = 0
            for path in self.work.rglob("*") if self.work.exists() else ():
                try:
                    total += path.stat().st_size if path.is_file() else 0
                except OSError:
                    pass  # removed while we looked
            self.peak_work = max(self.peak_work, total)
            self.lowest_free = min(self.lowest_free, shutil.disk_usage(self.work.parent).free)


def cp_round(database: Path, out: Path) -> tuple[float, float, float]:
    """`cp` of the database file, then `cp` again and `cp` + fsync of the copy (what the sync
    does before it trusts a copy), as bench/db_copy.py measures them; returns the three times.
    The first `cp` of a file SQLite has just written (or the sync has just read) takes 2.5-3 s
    for 1 GB here and the next ones 0.4 s, also outside the host, so the first is reported apart
    and the ratios are against the second. Each starts after a `sync` (not timed), so writeback
    of what the grower or the sync wrote does not land in the `cp`."""

    def copy(flush: bool) -> None:
        subprocess.run(["cp", database, out], check=True)
        if flush:
            fsync(out)

    times = []
    try:
        for flush in (False, False, True):
            os.sync()
            times.append(timed(lambda: copy(flush)))  # noqa: B023 (called at once)
            clean(out)
    finally:
        clean(out)
    return tuple(times)


def measure_size(
    host: BenchHost,
    grower: RiderGrower,
    size_mb: int,
    site,
    load: bool,
    results: list,
) -> dict:
    database = host.release_dir(R1) / DB
    took = grower.grow(size_mb)
    files, file_bytes = lists_size(grower.lists_dir)
    figures = {
        "size_mb": size_mb,
        "database_bytes": database.stat().st_size,
        "events": grower.events,
        "riders": grower.riders,
        "rider_list_files": files,
        "rider_list_bytes": file_bytes,
        "grow_seconds": round(took, 1),
    }
    say(
        f"# {size_mb} MB: production database {figures['database_bytes'] / 2**20:.0f} MiB, "
        f"{grower.riders:,} riders in {grower.events:,} events, {files} rider list files "
        f"({file_bytes / 2**20:.1f} MiB), grown in {took:.1f} s"
    )
    out = host.root / "cp-bench.sqlite"
    before = cp_round(database, out)
    probe = Probe(host, site, "read", "sync", 0.05) if load else None
    if probe:
        probe.start()
        time.sleep(1.0)
    disk = DiskSampler(host.release_dir(R2) / "sync")
    disk.start()
    started = time.monotonic()
    try:
        fab_seconds = timed(lambda: fab_sync_staging(host, timeout=3600))
    finally:
        ended = time.monotonic()
        disk.stopping.set()
        disk.join(30)
        if probe:
            time.sleep(1.0)
            probe.stopping.set()
            probe.join(120)
    after = cp_round(database, out)
    event = host.last_release_event()
    if event.get("event") != "sync_staging":
        raise RuntimeError(f"the last event on the host is not the sync's: {event}")
    cp = statistics.median([before[1], after[1]])
    cp_fsync = statistics.median([before[2], after[2]])
    staging_db = host.release_dir(R2) / "RandoPony-staging.sqlite"
    figures.update(
        fab_seconds=round(fab_seconds, 2),
        sync_seconds=event["seconds"],
        steps=event["steps"],
        production_lock_seconds=event.get("production_lock_seconds"),
        staging_down_seconds=event.get("staging_down_seconds"),
        mirrored_files=event.get("mirrored_files"),
        sanitized=event.get("sanitized"),
        sanitize_phases=event.get("sanitize_seconds"),
        rows=event.get("rows"),
        staging_database_bytes=staging_db.stat().st_size,
        peak_work_bytes=disk.peak_work,
        peak_disk_used_bytes=disk.free_at_start - disk.lowest_free,
        first_cp_runs=[round(before[0], 3), round(after[0], 3)],
        cp_runs=[round(before[1], 3), round(after[1], 3)],
        cp_fsync_runs=[round(before[2], 3), round(after[2], 3)],
        cp_seconds=round(cp, 3),
        cp_fsync_seconds=round(cp_fsync, 3),
        sync_vs_cp=round(fab_seconds / cp, 1),
        sync_vs_cp_fsync=round(fab_seconds / cp_fsync, 1),
    )
    if probe:
        figures.update(
            reads=len(probe.log),
            failed_reads=probe.failures(),
            longest_without_read=round(probe.longest_unserved(started, ended), 2),
            slowest_read=round(max((end - start for start, end, _ in probe.log), default=0), 2),
        )
    say(f"# {size_mb} MB: the sanitise step's phases: {figures['sanitize_phases']}")
    results.append(figures)
    say(
        f"# {size_mb} MB: fab sync_staging {fab_seconds:.1f} s (steps {event['steps']}), "
        f"cp {cp:.2f} s, cp + fsync {cp_fsync:.2f} s"
        + (f", reads {figures['reads']} / failed {figures['failed_reads']}" if probe else "")
    )
    return figures


# --- Reporting ----------------------------------------------------------------------------------


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares seconds per MiB."""
    if len(points) < 2:
        return float("nan")
    mean_x = statistics.fmean(x for x, _ in points)
    mean_y = statistics.fmean(y for _, y in points)
    spread = sum((x - mean_x) ** 2 for x, _ in points)
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / spread


def print_report(results: list[dict]) -> None:
    if not results:
        return
    mib = [r["database_bytes"] / 2**20 for r in results]
    print(
        "\n| production database | riders / events / list files | fab sync_staging s "
        "| first cp s | cp s | cp + fsync s | sync / cp | sync / (cp + fsync) "
        "| reads failed / made |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|---:|---|")
    for size, r in zip(mib, results, strict=True):
        reads = f"{r['failed_reads']} / {r['reads']}" if "reads" in r else "-"
        print(
            f"| {size:,.0f} MiB | {r['riders']:,} / {r['events']:,} / {r['rider_list_files']} "
            f"| {r['fab_seconds']:.1f} | {max(r['first_cp_runs']):.2f} "
            f"| {r['cp_seconds']:.2f} | {r['cp_fsync_seconds']:.2f} "
            f"| {r['sync_vs_cp']:,.0f}x | {r['sync_vs_cp_fsync']:,.0f}x | {reads} |"
        )
    print("\nSteps, seconds (`steps` of the sync's line in deploy/releases.log):")
    print("| production database | " + " | ".join(STEPS) + " | summary total |")
    print("|---:|" + "---:|" * (len(STEPS) + 1))
    for size, r in zip(mib, results, strict=True):
        cells = " | ".join(f"{r['steps'].get(step, 0):.2f}" for step in STEPS)
        print(f"| {size:,.0f} MiB | {cells} | {r['sync_seconds']:.1f} |")
    if len(results) >= 2:
        print("\nGrowth, seconds per 100 MiB (least squares over the sizes; last two sizes):")
        for name, value in [("fab sync_staging", "fab_seconds"), ("cp", "cp_seconds")] + [
            (step, step) for step in STEPS
        ]:
            points = [
                (m, r[value] if value in r else r["steps"].get(value, 0))
                for m, r in zip(mib, results, strict=True)
            ]
            last = (points[-1][1] - points[-2][1]) / (points[-1][0] - points[-2][0])
            print(f"- {name}: {slope(points) * 100:.2f} s ({last * 100:.2f} s)")
    for size, r in zip(mib, results, strict=True):
        extra = {
            k: r.get(k)
            for k in (
                "production_lock_seconds",
                "staging_down_seconds",
                "longest_without_read",
                "slowest_read",
                "staging_database_bytes",
                "peak_work_bytes",
                "peak_disk_used_bytes",
                "sanitize_phases",
                "sanitized",
            )
        }
        print(f"- {size:,.0f} MiB: {extra}")


# --- Running ------------------------------------------------------------------------------------


def terminate(_signum, _frame):
    raise KeyboardInterrupt  # SIGTERM too goes through the finally that removes the host


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--sizes", default="10,100,1024", help="production database sizes in MiB, ascending"
    )
    parser.add_argument(
        "--list-every", type=int, default=100, help="one event in N has rider list files"
    )
    parser.add_argument("--no-load", action="store_true", help="no read load during the syncs")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    if sizes != sorted(sizes):
        parser.error("--sizes must ascend: the database only grows")

    signal.signal(signal.SIGTERM, terminate)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started in the background
    host = BenchHost(wait_limit=10.0)
    results: list[dict] = []
    failed = None
    started = time.monotonic()
    try:
        for other in other_hosts(host.root):
            say(f"# WARNING: another local host runs on this machine; ports may clash: {other}")
        host.up()
        say(f"# host root {host.root}, router 127.0.0.1:{host.router_port}")
        host.fab("init_staging", staging=R1, production=None)
        host.fab("promote_staging_to_production", "--yes", "--demo", staging=R1, production=None)
        host.fab("init_staging", staging=R2, production=R1)
        check_ports(host, R1, R2)
        say(f"# {R1} in production, {R2} on staging ({time.monotonic() - started:.1f} s)")
        site = discover(host)
        lists = host.release_dir(R1) / "rider_lists"
        grower = RiderGrower(host.release_dir(R1) / DB, lists, args.list_every)
        for size in sizes:
            measure_size(host, grower, size, site, not args.no_load, results)
            check_ports(host, R1, R2)
    except KeyboardInterrupt:
        failed = "interrupted"
    except Exception as error:
        failed = f"{type(error).__name__}: {error}"
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not stop the cleanup
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        say(f"# removing the host {host.root}")
        host.down()
    print_report(results)
    print(f"\n# {time.monotonic() - started:.0f} s in all")
    if results:
        print(
            "RESULT "
            + " ".join(
                f"sync_{r['size_mb']}mib_s={r['fab_seconds']} "
                f"sanitize_{r['size_mb']}mib_s={r['steps'].get('sanitize', 0)} "
                f"sync_vs_cp_fsync_{r['size_mb']}mib={r['sync_vs_cp_fsync']}"
                for r in results
            )
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    if failed:
        print(f"\nFAILED: {failed}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
