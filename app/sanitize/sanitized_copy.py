"""The sanitised database as a new file, written in parallel: what `python -m app.sanitize` does
on SQLite, the site's database.

Sanitising changes every rider row (every address goes to the sink), so rewriting the rows in
place wrote the database several times over: the rows and their indexes, the WAL of one big
transaction, its checkpoint, then VACUUM (so that no old value stays in a free page) twice more.
Here each table is copied once, through the rules, into a new file beside the original, and the
original is replaced only when the new file is whole and the final scan found nothing in it:

1. `plan`: the tables, the big ones cut into rowid ranges, shared between the workers (a process
   each: the host's two cores) so that each gets about as many rows;
2. `write_part`: each worker writes its share into a part file of its own with
   `INSERT ... SELECT`, in which SQLite calls the rules' own functions as database.py's UPDATE
   does, behind the same SQL test (`may_hold`) before the scrub. No journal and no fsync: a part
   is thrown away if anything fails, and the original is only read;
3. `merge`: the first part becomes the new database and the others' rows are added to it (a
   table written by one part only is copied whole, by SQLite's transfer of its records);
4. the final scan (leaks.py's `find_leaks`) of the new file: every text column of every table,
   the tables shared between the workers in rowid ranges;
5. `replace`: fsync, then the new file is renamed over the original.

Rows changed are counted as database.py's UPDATE counts them: a row counts once however many of
its values change. A database this cannot copy (a virtual table, a model table without rowids,
columns that are not the models') raises NotCopyable before anything is written; the command
line then sanitises it in place.
"""

import multiprocessing
import os
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import MetaData, case, create_engine, func, insert, literal_column, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool

from .. import models
from .database import check_revision, rewrites
from .leaks import find_leaks
from .rules import EMPTIED, Options, Rule, SanitizeError, scrub
from .sqlite import may_hold, sql_functions

# Rows worth a worker process: a small database is done by one process (a test's, in a second).
ROWS_PER_WORKER = 50_000
# Page cache of a connection writing a part, in KiB (SQLite's negative cache_size).
CACHE_KIB = 65_536
SOURCE = "source"
# Leaks listed when refusing, as database.py's in-place run lists them.
LEAKS_LISTED = 20


class NotCopyable(Exception):
    """The database holds something the copy does not handle; nothing was written."""


@dataclass(frozen=True)
class Unit:
    """A table, or the rows of a table whose rowids are `first` to `last` (None: all rows)."""

    table: str
    first: int | None = None
    last: int | None = None

    @property
    def rows(self) -> int:
        return 0 if self.first is None else self.last - self.first + 1


def _engine(path: Path):
    """A plain engine (not models.get_engine's: no WAL, no foreign keys, which would stop SQLite
    transferring whole tables) whose connections issue their own BEGIN."""
    engine = create_engine(f"sqlite:///{path}", poolclass=NullPool)
    return engine


def _driver(connection):
    driver = connection.connection.driver_connection
    driver.isolation_level = None
    return driver


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


# --- What there is to copy, and who copies what ---------------------------------------------------


@dataclass(frozen=True)
class Schema:
    tables: list[tuple[str, str]]  # (name, CREATE TABLE), in the database's order
    indexes: list[str]  # CREATE INDEX
    later: list[str]  # triggers and views: made once the rows are in
    journal_mode: str
    pragmas: dict[str, int]  # page_size, auto_vacuum, user_version, application_id
    extras: list[str]  # SQLite's own tables to carry over: sqlite_sequence, sqlite_stat1


def read_schema(connection) -> Schema:
    tables, indexes, later, extras = [], [], [], []
    rows = connection.exec_driver_sql(
        "SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY rowid"
    )
    for kind, name, sql in rows:
        if name.startswith("sqlite_"):
            extras.append(name)
        elif kind == "table" and sql.upper().startswith("CREATE VIRTUAL"):
            raise NotCopyable(f"{name} is a virtual table")
        elif kind == "table":
            tables.append((name, sql))
        elif kind == "index":
            indexes.append(sql)
        else:
            later.append(sql)
    pragmas = {
        name: connection.exec_driver_sql(f"PRAGMA {name}").scalar()
        for name in ("page_size", "auto_vacuum", "user_version", "application_id")
    }
    journal_mode = connection.exec_driver_sql("PRAGMA journal_mode").scalar()
    return Schema(tables, indexes, later, journal_mode, pragmas, extras)


def plan(connection, table_names: list[str], workers: int) -> list[list[Unit]]:
    """The tables' rows shared between `workers` parts, about as many rows each: the biggest table
    first into the first part up to its share, the rest of it into the next, and so on; a table
    that lands whole in a part other than the first is copied into the new file whole. Tables
    without rows (or rowids) go whole into the first part."""
    spans, whole = [], []
    for name in table_names:
        try:
            first, last = connection.exec_driver_sql(
                f"SELECT min(rowid), max(rowid) FROM {_quoted(name)}"
            ).one()
        except OperationalError:  # WITHOUT ROWID
            if models.metadata.tables.get(name) is not None and name not in EMPTIED:
                raise NotCopyable(f"{name} has no rowids") from None
            first = None
        if first is None or name in EMPTIED:
            whole.append(Unit(name))
        else:
            spans.append(Unit(name, first, last))
    spans.sort(key=lambda unit: unit.rows, reverse=True)
    share = sum(unit.rows for unit in spans) / workers
    parts: list[list[Unit]] = [[] for _ in range(workers)]
    loads = [0] * workers
    part = 0
    for unit in spans:
        first = unit.first
        while first <= unit.last:
            room = unit.last - first + 1 if part == workers - 1 else int(share - loads[part])
            if room <= 0:
                part += 1
                continue
            last = min(unit.last, first + room - 1)
            parts[part].append(Unit(unit.table, first, last))
            loads[part] += last - first + 1
            first = last + 1
    parts[0] += whole
    return parts


def _check_columns(connection, table_names: list[str]) -> None:
    for name in table_names:
        table = models.metadata.tables.get(name)
        if table is None or name in EMPTIED:
            continue
        columns = {
            row[1] for row in connection.exec_driver_sql(f"PRAGMA table_info({_quoted(name)})")
        }
        if columns != set(table.c.keys()):
            raise NotCopyable(f"{name}'s columns are not the models' ({sorted(columns)})")


# --- Writing a part (in a worker) -----------------------------------------------------------------


def write_part(source: str, part: str, schema: Schema, units: list[Unit], options: Options):
    """Write `units` of `source`, sanitised, into the new file `part` (with every table and index
    of the source, empty but for its units). Returns the rows changed per table."""
    engine = _engine(Path(part))
    try:
        with engine.connect() as connection:
            driver = _driver(connection)
            _set_up(driver, schema, SOURCE, source)
            driver.execute("BEGIN")
            for _name, sql in schema.tables:
                driver.execute(sql)
            for sql in schema.indexes:
                driver.execute(sql)
            changed: dict[str, int] = {}
            for unit in units:
                changed[unit.table] = changed.get(unit.table, 0) + _copy(connection, unit, options)
            driver.execute("COMMIT")
            return changed
    finally:
        engine.dispose()


def _set_up(driver, schema: Schema, alias: str, attached: str) -> None:
    # The file is the copy's alone until it is renamed: a crash means starting again.
    for pragma in ("journal_mode = OFF", "synchronous = OFF", f"cache_size = -{CACHE_KIB}"):
        driver.execute(f"PRAGMA main.{pragma}")
    driver.execute("PRAGMA temp_store = MEMORY")
    for name in ("page_size", "auto_vacuum"):
        driver.execute(f"PRAGMA main.{name} = {int(schema.pragmas[name])}")
    driver.execute("ATTACH DATABASE ? AS " + alias, (attached,))


def _copy(connection, unit: Unit, options: Options) -> int:
    """Copy a unit's rows into main, sanitised; returns the rows changed (for an emptied table,
    its rows, none of which is copied)."""
    name, quoted = unit.table, _quoted(unit.table)
    bounds = "" if unit.first is None else f" WHERE rowid BETWEEN {unit.first:d} AND {unit.last:d}"
    if name in EMPTIED:
        return connection.exec_driver_sql(f"SELECT count(*) FROM {SOURCE}.{quoted}").scalar()
    table = models.metadata.tables.get(name)
    ruled = rewrites(table) if table is not None else {}
    if not ruled or unit.first is None:
        connection.exec_driver_sql(
            f"INSERT INTO main.{quoted} SELECT * FROM {SOURCE}.{quoted}{bounds}"
        )
        return 0
    source = table.to_metadata(MetaData(), schema=SOURCE)
    rowid = literal_column("rowid")
    marks = bytearray(unit.rows)
    functions, new = {}, {}
    for i, (column, rule) in enumerate(ruled.items()):
        sql_name = f"randopony_copy_{i}"
        functions[sql_name] = (_marking(rule, options, marks, unit.first), rule.deterministic)
        new[column] = getattr(func, sql_name)(source.c[column], rowid)
        if rule.rewrite is scrub:
            may_change = may_hold(source.c[column], options.production_domain)
            new[column] = case((may_change, new[column]), else_=source.c[column])
    names = list(table.c.keys())
    query = select(*(new.get(column, source.c[column]) for column in names))
    query = query.where(rowid.between(unit.first, unit.last))
    with sql_functions(connection, functions):
        connection.execute(insert(table).from_select(names, query))
    return marks.count(1)


def _marking(rule: Rule, options: Options, marks: bytearray, first: int):
    """The rule's rewrite as a function of a value and its row's rowid, which marks the row
    when the value changes (`marks`, a byte a row from rowid `first`). NULL stays NULL."""
    rewrite = rule.rewrite

    def call(value, rowid):
        if value is None:
            return None
        new = rewrite(value, options)
        if new != value:
            marks[rowid - first] = 1
        return new

    return call


# --- Putting the parts together, and the final scan -------------------------------------------


def merge(parts: list[Path], units: list[list[Unit]], schema: Schema, source: Path) -> None:
    """Add the rows of every part after the first to the first; then what the parts did not
    make: triggers and views, SQLite's own counters and statistics, the header's values."""
    engine = _engine(parts[0])
    try:
        with engine.connect() as connection:
            driver = _driver(connection)
            _set_up(driver, schema, SOURCE, str(source))
            for i, (part, its_units) in enumerate(zip(parts[1:], units[1:], strict=True)):
                alias = f"part{i}"
                driver.execute(f"ATTACH DATABASE ? AS {alias}", (str(part),))
                driver.execute("BEGIN")
                for name in dict.fromkeys(unit.table for unit in its_units if unit.rows):
                    quoted = _quoted(name)
                    driver.execute(f"INSERT INTO main.{quoted} SELECT * FROM {alias}.{quoted}")
                driver.execute("COMMIT")
                driver.execute(f"DETACH DATABASE {alias}")
            driver.execute("BEGIN")
            for sql in schema.later:
                driver.execute(sql)
            for name in schema.extras:
                if name == "sqlite_stat1":
                    driver.execute("ANALYZE main.sqlite_schema")  # makes the table, empty
                if name in ("sqlite_sequence", "sqlite_stat1"):
                    driver.execute(f"DELETE FROM main.{name}")
                    driver.execute(f"INSERT INTO main.{name} SELECT * FROM {SOURCE}.{name}")
            driver.execute("COMMIT")
            for name in ("user_version", "application_id"):
                driver.execute(f"PRAGMA main.{name} = {int(schema.pragmas[name])}")
    finally:
        engine.dispose()


def scan_part(path: str, units: list[Unit], options: Options, limit: int) -> list:
    """The final scan of `units` of the new file (leaks.py)."""
    engine = _engine(Path(path))
    try:
        with engine.connect() as connection:
            return find_leaks(
                connection,
                sink_domain=options.sink_domain,
                production_domain=options.production_domain,
                limit=limit,
                tables=[(unit.table, unit.first, unit.last) for unit in units],
            )
    finally:
        engine.dispose()


# --- The whole run ------------------------------------------------------------------------------


class SanitizedCopy:
    """The sanitised copy of the SQLite file `database`, in `workers` processes at most:

    copy = SanitizedCopy(path, options, workers)
    try:
        copy.start()  # the workers write their parts
        ...           # the caller's own work meanwhile (the rider lists)
        counts = copy.finish()  # merged and scanned: SanitizeError if anything is left
        ...           # read the new file: copy.path
        copy.replace()
    finally:
        copy.discard()  # whatever is left of the parts, the new file, the workers
    """

    def __init__(self, database: Path, options: Options, workers: int):
        self.database = Path(database)
        self.options = options
        self.workers = workers
        self.path = self.database.with_name(self.database.name + ".sanitized")
        self.parts: list[Path] = []
        self.pool = None
        self.pending = []
        self.seconds: dict[str, float] = {}
        self.clock = time.monotonic()

    def _took(self, phase: str) -> None:
        now = time.monotonic()
        self.seconds[phase] = round(now - self.clock, 2)
        self.clock = now

    def start(self) -> None:
        """Check the database, plan, and start the workers; NotCopyable or SanitizeError
        before anything is written."""
        engine = _engine(self.database)
        try:
            with engine.connect() as connection:
                check_revision(connection)
                self.schema = read_schema(connection)
                names = [name for name, _sql in self.schema.tables]
                _check_columns(connection, names)
                rows = sum(unit.rows for unit in plan(connection, names, 1)[0])
                self.workers = max(1, min(self.workers, rows // ROWS_PER_WORKER))
                self.units = plan(connection, names, self.workers)
        finally:
            engine.dispose()
        self.parts = [self.path] + [
            self.path.with_name(f"{self.path.name}.part{i}") for i in range(1, self.workers)
        ]
        for path in self.parts:
            _remove(path)
        tasks = [
            (str(self.database), str(path), self.schema, units, self.options)
            for path, units in zip(self.parts, self.units, strict=True)
        ]
        if self.workers == 1:
            self.pending = [("now", tasks[0])]
        else:
            # Forked: the workers start at once, with the rules as the caller has them.
            self.pool = multiprocessing.get_context("fork").Pool(self.workers)
            self.pending = [("async", self.pool.apply_async(write_part, task)) for task in tasks]
        self._took("plan")

    def finish(self) -> dict[str, int]:
        """Wait for the parts, merge them and scan the new file; returns the rows changed per
        table. SanitizeError if anything is left. `seconds` says how long each took."""
        counts: dict[str, int] = {}
        for how, task in self.pending:
            part = write_part(*task) if how == "now" else task.get()
            for table, changed in part.items():
                counts[table] = counts.get(table, 0) + changed
        self.pending = []
        self._took("parts")
        merge(self.parts, self.units, self.schema, self.database)
        for path in self.parts[1:]:
            _remove(path)
        self.parts = self.parts[:1]
        self._took("merge")
        leaks = self._scan()
        self._took("scan")
        if leaks:
            raise SanitizeError("left after sanitising: " + "; ".join(map(str, leaks)))
        return {table.name: counts.get(table.name, 0) for table in models.metadata.sorted_tables}

    def _scan(self) -> list:
        engine = _engine(self.path)
        try:
            with engine.connect() as connection:
                names = [name for name, _sql in self.schema.tables]
                units = plan(connection, names, self.workers)
        finally:
            engine.dispose()
        tasks = [(str(self.path), its_units, self.options, LEAKS_LISTED) for its_units in units]
        if self.pool is None:
            found = [scan_part(*task) for task in tasks]
        else:
            found = [
                result.get()
                for result in [self.pool.apply_async(scan_part, task) for task in tasks]
            ]
        return [leak for leaks in found for leak in leaks][:LEAKS_LISTED]

    def replace(self) -> None:
        """The new file, on disk, in the original's place (with the original's journal mode);
        the original's WAL and shared memory, which would be read as the new file's, go."""
        self._close_pool()
        if self.schema.journal_mode.lower() == "wal":
            engine = _engine(self.path)
            try:
                with engine.connect() as connection:
                    _driver(connection).execute("PRAGMA journal_mode = WAL")
            finally:
                engine.dispose()
        fd = os.open(self.path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        for suffix in ("-wal", "-shm", "-journal"):
            _remove(self.database.with_name(self.database.name + suffix))
        os.replace(self.path, self.database)
        fd = os.open(self.database.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        self.parts = []
        self._took("reports, fsync and rename")

    def discard(self) -> None:
        """Stop the workers and remove what is left of the copy (nothing after `replace`)."""
        if self.pool is not None:
            self.pool.terminate()
            self.pool.join()
            self.pool = None
        for path in self.parts:
            _remove(path)
        self.parts = []

    def _close_pool(self) -> None:
        if self.pool is not None:
            self.pool.close()
            self.pool.join()
            self.pool = None


def _remove(path: Path) -> None:
    for suffix in ("", "-journal", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
