"""`python -m app.sanitize`: the command `fab sync_staging` runs on the staging release's copy
of production's database and rider lists, with the staging release's own code. Prints one line of
JSON for the sync to read, and exits 2 when it refuses.
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

from pyramid.paster import get_appsettings
from sqlalchemy import create_engine, func, inspect, select
from sqlalchemy.pool import NullPool
from sqlalchemy.sql import table as sql_table

from .. import models
from .. import settings as app_settings
from ..mail import allowed_domains
from .database import sanitize_with_options, vacuum
from .files import RiderListCopy, event_uuids
from .rules import DEFAULT_SINK_DOMAIN, MIN_SINK_KEY, Options, SanitizeError, checked_options
from .sanitized_copy import NotCopyable, SanitizedCopy

# The host's two cores: the rows shared between two workers (sanitized_copy.py).
WORKERS = min(2, os.cpu_count() or 1)


def main(argv=None) -> int:
    """python -m app.sanitize staging.ini --production-domain D --staging-domain D
    [--rider-lists-from MIRROR --rider-lists-to DIR]

    Sanitises the database of a staging ini (never a production one): a SQLite file is written
    anew beside it by up to --workers processes and replaces it once whole and scanned
    (sanitized_copy.py); any other database (or a SQLite one the copy cannot handle) is
    sanitised in one transaction, a SQLite one then VACUUMed so no old value survives in free
    pages. The staging wrangler password comes from
    RANDOPONY_WRANGLER_PASSWORD (never the command line); the sink domain is the first of the
    ini's mail.only_to_domains, the domains its mail guard lets through. With the rider list
    options, the rider lists mirrored from production are written, sanitised and under the
    events' new uuids, to DIR, which must not exist or be empty (app/sanitize/files.py). Prints
    one line of JSON: the rows changed per table, "rows" (rows per table after sanitising),
    "wranglers" (the staging logins) and, with the rider list options, "files". Exits 2, with
    the database and DIR as they were, when it refuses."""
    parser = argparse.ArgumentParser(prog="python -m app.sanitize", description=main.__doc__)
    parser.add_argument("config_uri", help="the staging release's ini, e.g. staging.ini")
    parser.add_argument("--production-domain", required=True)
    parser.add_argument("--staging-domain", required=True)
    parser.add_argument(
        "--rider-lists-from", metavar="MIRROR", help="production's rider lists, as mirrored"
    )
    parser.add_argument(
        "--rider-lists-to", metavar="DIR", help="where staging's rider lists are written"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=WORKERS,
        help=f"processes sanitising a SQLite database at most (default {WORKERS})",
    )
    parser.add_argument(
        "--sink-key-file",
        metavar="FILE",
        required=True,
        help="the host's sink key (readable by its owner only): sink addresses are keyed by it",
    )
    args = parser.parse_args(argv)
    if (args.rider_lists_from is None) != (args.rider_lists_to is None):
        parser.error("--rider-lists-from and --rider-lists-to go together: give both or neither")
    settings = app_settings.load(get_appsettings(args.config_uri))
    if settings["production_deployment"]:
        print(f"{args.config_uri} is a production ini: refusing to sanitise", file=sys.stderr)
        return 2
    rider_lists = None
    if args.rider_lists_from is not None:
        rider_lists = RiderListCopy(args.rider_lists_from, args.rider_lists_to)
        if refusal := rider_lists.refusal():
            print(f"sanitize: {refusal}", file=sys.stderr)
            return 2
    try:
        sink_key = read_sink_key(args.sink_key_file)
    except ValueError as error:
        print(f"sanitize: {error}", file=sys.stderr)
        return 2
    engine = models.get_engine(settings)
    done = False
    try:
        options = checked_options(
            (allowed_domains(settings) or [DEFAULT_SINK_DOMAIN])[0],
            args.production_domain,
            args.staging_domain,
            os.environ.get("RANDOPONY_WRANGLER_PASSWORD", ""),
            sink_key,
        )
        report = None
        database = _sqlite_file(engine)
        if database is not None:
            try:
                report = _sanitize_a_copy(database, options, rider_lists, args.workers)
            except NotCopyable as why:
                print(f"sanitize: sanitising in place: {why}", file=sys.stderr)
        if report is None:
            # Files are written inside the transaction: if they are refused, so is the database.
            with engine.begin() as connection:
                report = _sanitize_and_report(connection, options, rider_lists)
            if engine.dialect.name == "sqlite":
                vacuum(engine)
        done = True
    except (SanitizeError, ValueError) as error:
        print(f"sanitize: {error}", file=sys.stderr)
        return 2
    finally:
        if not done and rider_lists is not None:
            rider_lists.remove()
        engine.dispose()
    print(json.dumps(report, sort_keys=True))
    return 0


def read_sink_key(path: str) -> bytes:
    """The key file's bytes; refused when others may read it (it would let them hash guesses)."""
    try:
        with open(path, "rb") as f:
            if os.fstat(f.fileno()).st_mode & 0o077:
                raise ValueError(f"the sink key {path} is readable by others: chmod 0400 it")
            key = f.read().strip()
    except OSError as error:
        raise ValueError(f"cannot read the sink key: {error}") from None
    if len(key) < MIN_SINK_KEY:
        raise ValueError(f"the sink key {path} is shorter than {MIN_SINK_KEY} bytes")
    return key


def _sqlite_file(engine) -> Path | None:
    if engine.dialect.name != "sqlite" or engine.url.database in (None, "", ":memory:"):
        return None
    return Path(engine.url.database)


def _sanitize_a_copy(database: Path, options: Options, rider_lists, workers: int) -> dict:
    """The database sanitised as a new file by the workers (sanitized_copy.py) while this
    process writes the rider lists; the new file replaces the database only if nothing was
    left in either."""
    copy = SanitizedCopy(database, options, workers)
    try:
        copy.start()
        before = _read(database, event_uuids)
        if rider_lists is not None:
            started = time.monotonic()
            rider_lists.prepare(set(before.values()), options)
            lists_seconds = round(time.monotonic() - started, 2)
        report: dict = copy.finish()
        engine = create_engine(f"sqlite:///{copy.path}", poolclass=NullPool)
        try:
            with engine.connect() as connection:
                if rider_lists is not None:
                    after = event_uuids(connection)
                    renamed = {old: after[key] for key, old in before.items() if key in after}
                    report["files"] = rider_lists.finish(renamed)
                report["rows"] = row_counts(connection)
                report["wranglers"] = wrangler_logins(connection)
        finally:
            engine.dispose()
        copy.replace()
        # Where the time went, for the sync's figures (the rider lists: while the parts were
        # written, in this process).
        report["seconds"] = {**copy.seconds, "workers": copy.workers}
        if rider_lists is not None:
            report["seconds"]["rider lists, meanwhile"] = lists_seconds
        return report
    finally:
        copy.discard()


def _read(database: Path, query):
    engine = create_engine(f"sqlite:///{database}", poolclass=NullPool)
    try:
        with engine.connect() as connection:
            return query(connection)
    finally:
        engine.dispose()


def _sanitize_and_report(connection, options: Options, rider_lists) -> dict:
    before = event_uuids(connection)
    report: dict = sanitize_with_options(connection, options)
    if rider_lists is not None:
        after = event_uuids(connection)
        renamed = {old: after[key] for key, old in before.items() if key in after}
        report["files"] = rider_lists.write(renamed, options)
    report["rows"] = row_counts(connection)
    report["wranglers"] = wrangler_logins(connection)
    return report


# --- What the sanitised database holds ------------------------------------------------------


def row_counts(connection) -> dict[str, int]:
    """Rows per table, for every table in the database (not only the models' tables)."""
    return {
        name: connection.execute(select(func.count()).select_from(sql_table(name))).scalar()
        for name in inspect(connection).get_table_names()
    }


def wrangler_logins(connection) -> list[str]:
    wranglers = models.metadata.tables["wranglers"]
    return list(connection.execute(select(wranglers.c.email).order_by(wranglers.c.id)).scalars())
