"""Benchmark: what app/sanitize does to a database on generated production-like databases, for
this checkout's code and, optionally, another tree's (the code before a change), on copies of the
same database file, in the same run.

    .venv/bin/python bench/sanitize.py [--riders 50000,500000] [--rounds 3]
        [--against DIR] [--keep DIR] [--workers 2]

    # the code of another commit, without touching the shared checkout (no `git stash`):
    mkdir /tmp/sanitize-before
    git archive COMMIT app alembic | tar -x -C /tmp/sanitize-before
    .venv/bin/python bench/sanitize.py --against /tmp/sanitize-before

Per size, one database is built (migrated and initialised by the app's own code, then filled with
plain SQL): events with 100 to 700 riders each, real-looking addresses and names (some not ASCII),
comments and answers of varying length, some empty, some holding an address or a link to the
production site, organizers' address lists. Each round copies it and sanitises the copy in a
process of its own (the code tree's `app` first on its path), once per code tree, the trees
interleaved so drift on a shared machine hits both alike; medians are reported.

What is timed is what the command line does to a SQLite database with that tree: since #16 the
sanitised copy (app/sanitize/sanitized_copy.py: written anew by --workers processes, scanned,
renamed over the original); before, `sanitize()` in one transaction, its commit and VACUUM. The
staging password's hash (bcrypt, the same fixed cost for any size) is timed apart. Per run: the
seconds without the hash; the CPU seconds of the process and its workers (less swayed by other
work on a shared machine); the final scan (the copy's own phase; for the old way `find_leaks`
again, after); the phases. rows/s is the rows of the models' tables over those seconds. With
--against, the bench also checks that both trees leave exactly the same database (every table and
column, except the values that are random by design: events' uuids, the page token and the
password hash's salt, which are only checked to have changed) and report the same rows changed;
it exits 1 when they do not. The last line is `RESULT ...`: seconds, and with --against the
speed-up and CPU ratio over the other tree, per size."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(CHECKOUT))

PRODUCTION = "randopony.randonneurs.bc.ca"
STAGING = "staging." + PRODUCTION
PASSWORD = "bench staging password"

FIRST = (
    "Ada Alex Alice Amir Anna Ben Bruno Carla Chen Chris Dana David Diego Elena Emma Eric Fatima "
    "Felix Grace Hana Hugo Ian Ines Jack Jana Jin João Karen Kenji Lars Laura Leo Lin Lucía Maya "
    "Mei Mike Nadia Noah Nora Olga Omar Pat Paul Priya Quinn Raj Rosa Ruth Sam Sara Sean Sofia "
    "Tara Tom Uma Vera Victor Wei Yara Zoë Łukasz Søren Chloé"
).split()
LAST = (
    "Anderson Bergeron Brown Campbell Chan Clarke Côté Davies Dubois Fischer Fraser Gagnon Garcia "
    "Gill Gomez Grant Hall Harris Ito Jensen Khan Kim Kowalski Lam Larsen Leblanc Lee Li MacDonald "
    "Martin Mason Müller Murphy Nguyễn Novak Olsen Park Patel Pearson Reid Roberts Ross Roy Sandhu "
    "Schmidt Scott Singh Smith Stewart Tanaka Taylor Thomas Tremblay Wang Watson White Wilson Wong "
    "Young Zhang O'Neil"
).split()
MAIL_DOMAINS = (
    "gmail.com gmail.com gmail.com shaw.ca telus.net hotmail.com yahoo.ca outlook.com icloud.com "
    "sfu.ca ubc.ca randonneurs.bc.ca proton.me uvic.ca"
).split()
WORDS = (
    "ride riding bike wheel tire chain climb descent rain wind headwind tailwind night lights "
    "control card brevet permanent randonneur club route cue sheet hill coffee bakery ferry "
    "start finish early late tent hotel friend partner tandem fender bag drop spare tube pump "
    "first second last season years since training please thanks see you there will bring "
    "my our the a with for and to at on after before about café très über"
).split()
BIKES = ["single"] * 12 + ["tandem", "fixie", "single-speed", "recumbent", "velomobile", "other"]
ROUTES = "Seymour Squamish Harrison Hope Fraser Valley Sunshine Coast Island Okanagan".split()


# --- Building a database ----------------------------------------------------------------------


class Riders:
    """Rows for the riders' and events' tables, from a seeded generator."""

    def __init__(self, seed: int = 6):
        self.rng = random.Random(seed)
        self.sentences = [self.sentence(3, 14) for _ in range(5000)]

    def sentence(self, low: int, high: int) -> str:
        text = " ".join(self.rng.choices(WORDS, k=self.rng.randint(low, high)))
        return text[:1].upper() + text[1:] + "."

    def pick(self, seq):
        return seq[int(self.rng.random() * len(seq))]

    def address(self, first: str, last: str, n: int) -> str:
        separator = self.pick((".", "", "_", "+brevets."))
        return f"{first}{separator}{last}{n % 97}@{self.pick(MAIL_DOMAINS)}".lower()

    def comment(self, n: int, first: str, last: str) -> str | None:
        pick = self.rng.random()
        if pick < 0.45:
            return None  # about half the riders leave no comment
        if pick < 0.5:
            return ""
        if pick < 0.58:
            buddy = self.address(self.pick(FIRST), self.pick(LAST), n + 7)
            return f"Riding with {self.pick(FIRST)} ({buddy}). " + self.pick(self.sentences)
        if pick < 0.62:
            day = f"{n % 28 + 1:02d}Jun2025"
            return f"Results of my last one: https://{PRODUCTION}/brevets/LM/200/{day}"
        if pick < 0.63:
            return f"Mail {first} at {self.address(first, last, n)} or see https://{PRODUCTION}/"
        count = self.pick((1, 1, 1, 2, 3, 6))
        return " ".join(self.rng.choices(self.sentences, k=count))[:500]

    def info_answer(self, n: int) -> str:
        pick = self.rng.random()
        if pick < 0.6:
            return self.pick(("Yes", "No", "Vegetarian", "Chicken", "No thanks", ""))
        if pick < 0.7:
            return f"Please send the cue sheet to {self.address(self.pick(FIRST), 'cue', n)}"
        return self.pick(self.sentences)


def build(path: Path, riders: int) -> dict[str, int]:
    """A database at the code's head, initialised as a site is, with `riders` riders."""
    from pyramid.paster import get_appsettings

    from app.scripts.initialize_db import initialize

    settings = dict(get_appsettings(str(CHECKOUT / "testing.ini")))
    settings["sqlalchemy.url"] = f"sqlite:///{path}"
    settings["private_credentials"] = str(path.parent / "private_credentials")
    initialize(settings, wrangler_email="admin@randonneurs.bc.ca", wrangler_password="x" * 12)

    gen = Riders()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("BEGIN")
    conn.execute(
        "INSERT INTO wranglers (email, password_hash) VALUES (?, ?)",
        ("second.wrangler@gmail.com", "$2b$12$" + "x" * 53),
    )
    conn.execute(
        "UPDATE links SET url = ? WHERE key = 'results_link'", (f"https://{PRODUCTION}/results/",)
    )
    conn.execute(
        "INSERT INTO outbound_emails (to_addrs, subject, body, created_at, attempts)"
        " VALUES (?, 'Pending', ?, ?, 0)",
        ("ada@gmail.com", f"https://{PRODUCTION}/brevets/", str(datetime(2025, 6, 1))),
    )
    made, events, clock = 0, 0, datetime(2025, 6, 1, 7, 0)
    while made < riders:
        events += 1
        clock -= timedelta(hours=11)
        made += add_event(conn, gen, events, clock, min(riders - made, gen.rng.randint(100, 700)))
    conn.execute("COMMIT")
    conn.execute("VACUUM")
    conn.close()
    return {"riders": made, "events": events, "bytes": path.stat().st_size}


def add_event(conn, gen: Riders, n: int, start: datetime, count: int) -> int:
    rng, pick = gen.rng, gen.pick
    organizers = ", ".join(
        gen.address(pick(FIRST), pick(LAST), n) for _ in range(rng.randint(1, 2))
    )
    common = {
        "date_time": str(start),
        "start_locn": f"{pick(ROUTES)} {pick(('Tim Hortons', 'Café', 'Park'))}",
        "start_map_url": pick((None, None, f"https://maps.example.net/?q={n}", "")),
        "organizer_email": organizers,
        "registration_end": str(start - timedelta(hours=19)),
        "uuid": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
    }
    brevet = n % 3 != 0
    if brevet:
        table, riders_table = "brevets", "brevet_riders"
        row = {
            **common,
            "region": pick(("LM", "VI", "PR", "SI")),
            "distance": pick((200, 300, 400, 600, 1000, 1200)),
            "route_name": f"{pick(ROUTES)} {pick(('Loop', 'Classic', 'Hills'))}",
            "info_question": pick(
                (None, None, "Meal at the finish?", f"Drop bag? See https://{PRODUCTION}/help")
            ),
        }
    else:
        table, riders_table = "populaires", "populaire_riders"
        row = {
            **common,
            "event_name": f"{pick(ROUTES)} Populaire {start.year}",
            "short_name": f"pop{n}",
            "distance": pick(("25 km, 50 km", "50 km, 100 km", "100 km")),
            "entry_form_url": pick((None, f"http://{PRODUCTION}/populaires/pop{n}")),
        }
    marks = ", ".join("?" * len(row))
    event_id = conn.execute(
        f"INSERT INTO {table} ({', '.join(row)}) VALUES ({marks})", tuple(row.values())
    ).lastrowid
    asks = brevet and row["info_question"] is not None
    rows = []
    for i in range(count):
        first, last = pick(FIRST), pick(LAST)
        r = n * 1000 + i
        registered = start - timedelta(minutes=int(rng.random() * 86400) + 60)
        values = [event_id, gen.address(first, last, r), first, last, gen.comment(r, first, last)]
        values.append(registered.strftime("%Y-%m-%d %H:%M:00.000000"))
        if brevet:
            values += [pick(BIKES), pick((1, 1, 1, 0, None)), gen.info_answer(r) if asks else None]
        else:
            values.append(pick(("25", "50", "100")))
        rows.append(values)
    if brevet:
        columns = "brevet_id, email, first_name, last_name, comment, registered_at, "
        columns += "bike_type, member_status, info_answer"
    else:
        columns = "populaire_id, email, first_name, last_name, comment, registered_at, distance"
    marks = ", ".join("?" * len(rows[0]))
    # OR IGNORE: the rare duplicate sign-up (same event, address and names) is dropped.
    before = conn.total_changes
    conn.executemany(f"INSERT OR IGNORE INTO {riders_table} ({columns}) VALUES ({marks})", rows)
    return conn.total_changes - before


# --- Running one tree's sanitize() ------------------------------------------------------------

RUN = r"""
import json, resource, sqlite3, sys, time
from pathlib import Path
import app
from app.models import get_engine, metadata
try:  # app/sanitize/ as a package (#13)
    from app.sanitize.database import sanitize_with_options, vacuum
    from app.sanitize.leaks import find_leaks
    from app.sanitize.rules import checked_options
except ImportError:  # app/sanitize.py, the tree before it, given with --against
    from app.sanitize import _options as checked_options, _sanitize as sanitize_with_options
    from app.sanitize import find_leaks, vacuum
try:  # the database written anew by workers (#16)
    from app.sanitize.sanitized_copy import SanitizedCopy
except ImportError:
    SanitizedCopy = None

db, production, staging, password, workers = sys.argv[1:6]
rows = sum(
    sqlite3.connect(db).execute(f'SELECT count(*) FROM "{t.name}"').fetchone()[0]
    for t in metadata.sorted_tables
)
from app.migrations import code_heads
code_heads()  # read once per process (alembic's imports): not the rows' time


def cpu_seconds():  # this process and its workers, once they are done
    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    return sum(u.ru_utime + u.ru_stime for u in usage)


started = time.perf_counter()
# the staging password's hash (bcrypt) timed apart: the same fixed cost for any size
key = b"bench-sink-key-0123456789"
options = checked_options("sink.invalid", production, staging, password, key)
hashed = time.perf_counter() - started
cpu = cpu_seconds()
if SanitizedCopy is not None:  # what the command line does on SQLite now
    copy = SanitizedCopy(Path(db), options, int(workers))
    try:
        copy.start()
        counts = copy.finish()
        copy.replace()
    finally:
        copy.discard()
    seconds = time.perf_counter() - started
    phases = dict(copy.seconds, workers=copy.workers)
    scan = copy.seconds["scan"]
else:  # in one transaction, then VACUUM, as the command line did
    engine = get_engine({"sqlalchemy.url": f"sqlite:///{db}"})  # tuned as the site's
    with engine.begin() as connection:
        counts = sanitize_with_options(connection, options)
        phases = {"sanitize": round(time.perf_counter() - started - hashed, 2)}
        mark, scan_cpu = time.perf_counter(), cpu_seconds()
        find_leaks(connection, sink_domain="sink.invalid", production_domain=production)
        scan = time.perf_counter() - mark  # again, apart: it is inside the sanitize above
        started += scan
        cpu += cpu_seconds() - scan_cpu  # and not counted
        mark = time.perf_counter()
    phases["commit"] = round(time.perf_counter() - mark, 2)
    mark = time.perf_counter()
    vacuum(engine)
    phases["VACUUM"] = round(time.perf_counter() - mark, 2)
    engine.dispose()
    seconds = time.perf_counter() - started
cpu = cpu_seconds() - cpu
print(json.dumps({"code": app.__file__, "rows": rows, "counts": counts, "sanitize": seconds,
                  "hash": hashed, "cpu": cpu, "scan": scan, "phases": phases}))
"""

# Random by design: compared only as "changed".
RANDOM_COLUMNS = {("brevets", "uuid"), ("populaires", "uuid"), ("page_generation", "token")}
RANDOM_COLUMNS |= {("wranglers", "password_hash")}


def run(tree: Path, database: Path, workers: int) -> dict:
    env = dict(os.environ, PYTHONPATH=str(tree))
    done = subprocess.run(
        [sys.executable, "-c", RUN, str(database), PRODUCTION, STAGING, PASSWORD, str(workers)],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"sanitize failed with {tree}:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if not result["code"].startswith(str(tree.resolve())):
        raise RuntimeError(f"{tree}: imported {result['code']} instead")
    return result


def content(database: Path, original: Path) -> dict[str, str]:
    """table -> digest of its rows (by rowid), random columns replaced by whether they changed."""
    conn = sqlite3.connect(database)
    conn.execute("ATTACH ? AS original", (str(original),))
    digests = {}
    tables = [name for (name,) in conn.execute("SELECT name FROM sqlite_schema WHERE type='table'")]
    for table in sorted(tables):
        names = [row[1] for row in conn.execute(f'PRAGMA table_info("{table}")')]
        old = {row[0]: row[1:] for row in conn.execute(f'SELECT rowid, * FROM original."{table}"')}
        digest = hashlib.sha256()
        for rowid, *values in conn.execute(f'SELECT rowid, * FROM main."{table}" ORDER BY rowid'):
            for i, name in enumerate(names):
                if (table, name) in RANDOM_COLUMNS:
                    values[i] = "changed" if values[i] != old[rowid][i] else "same"
            digest.update(repr((rowid, values)).encode())
        digests[table] = digest.hexdigest()
    conn.close()
    return digests


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--riders", default="50000,500000", help="sizes, comma separated")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--against", type=Path, help="another tree holding app/ and alembic/")
    parser.add_argument("--keep", type=Path, help="keep the built databases in this directory")
    parser.add_argument(
        "--workers", type=int, default=2, help="the sanitised copy's workers (this checkout's)"
    )
    args = parser.parse_args()
    trees = {"this checkout": CHECKOUT}
    if args.against is not None:
        trees = {f"against ({args.against})": args.against.resolve(), **trees}
    work = Path(tempfile.mkdtemp(prefix="bench-sanitize-"))
    report = []
    try:
        for riders in map(int, args.riders.split(",")):
            folder = (args.keep or work) / f"riders-{riders}"
            database = folder / "production.sqlite"
            if not database.exists():
                folder.mkdir(parents=True, exist_ok=True)
                started = time.perf_counter()
                built = build(database, riders)
                print(f"built {built} in {time.perf_counter() - started:.1f} s", flush=True)
            size = database.stat().st_size
            results: dict[str, list[dict]] = {name: [] for name in trees}
            contents = {}
            for round_ in range(args.rounds):
                for name, tree in trees.items():
                    copy = work / "copy.sqlite"
                    shutil.copy(database, copy)
                    result = run(tree, copy, args.workers)
                    results[name].append(result)
                    if round_ == 0:
                        contents[name] = content(copy, database)
                    copy.unlink()
                    print(
                        f"{riders} riders, round {round_ + 1}, {name}: sanitize "
                        f"{result['sanitize']:.2f} s (CPU without the hash {result['cpu']:.2f} s, "
                        f"scan {result['scan']:.2f} s; {result['phases']})",
                        flush=True,
                    )
            line = {"riders": riders, "mb": round(size / 2**20, 1)}
            for name, runs in results.items():
                seconds = statistics.median(r["sanitize"] for r in runs)
                rows_seconds = statistics.median(r["sanitize"] - r["hash"] for r in runs)
                line[name] = {
                    "sanitize_s": round(seconds, 3),
                    "without_hash_s": round(rows_seconds, 3),
                    "scan_s": round(statistics.median(r["scan"] for r in runs), 3),
                    "phases": runs[0]["phases"],
                    "rows": runs[0]["rows"],
                    "rows_per_s": round(runs[0]["rows"] / rows_seconds),
                    "cpu_s": round(statistics.median(r["cpu"] for r in runs), 3),
                    "counts": runs[0]["counts"],
                }
            if len(trees) == 2:
                (a, b) = trees
                line["speedup"] = round(line[a]["without_hash_s"] / line[b]["without_hash_s"], 2)
                line["cpu_speedup"] = round(line[a]["cpu_s"] / line[b]["cpu_s"], 2)
                line["same_counts"] = line[a]["counts"] == line[b]["counts"]
                line["same_content"] = contents[a] == contents[b]
                if not line["same_content"]:
                    differing = set(contents[a].items()) ^ set(contents[b].items())
                    line["differing_tables"] = sorted({table for table, _ in differing})
            report.append(line)
            print(json.dumps(line, indent=1), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    same = all(line.get("same_content", True) and line.get("same_counts", True) for line in report)
    figures = []
    for line in report:
        here = line["this checkout"]
        figures.append(f"sanitize_{line['riders']}_s={here['without_hash_s']}")
        if "speedup" in line:
            figures.append(f"speedup_{line['riders']}={line['speedup']}")
            figures.append(f"cpu_ratio_{line['riders']}={line['cpu_speedup']}")
            figures.append(f"same_content_{line['riders']}={int(line['same_content'])}")
    print("RESULT " + " ".join(figures))
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
