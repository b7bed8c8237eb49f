"""Staging's rider list files, made from a mirror of production's rider lists.

Rider lists (app/rider_lists.py) are named `<event uuid>.csv` and `<event uuid>.xlsx`, and the uuid
is the organizer's secret link. Sanitising gives every event a new uuid, so a mirrored
`<old uuid>.csv` is written as `<new uuid>.csv`; anything else in the mirror (a file of no event,
another extension, a subdirectory, a symbolic link) is dropped. Every cell goes through the
database's own functions (rules.py) with the same Options, so an address becomes the same sink
address in a rider list as in the database.

Then every file written is scanned the way the leak scan (leaks.py) judges the database's values:
the text of a CSV; every string cell of an XLSX and, as a safety net, every part of its zip (so a
hyperlink, a comment or a document property cannot slip through either). Anything left refuses
the whole run, and what was written is removed.
"""

import csv
import os
import re
import zipfile
from pathlib import Path

from sqlalchemy import select

from ..rider_lists import KINDS, write_atomically
from . import xlsx
from .leaks import leaks_in
from .rules import Options, SanitizeError, may_hold_hostname, scrub, sink_address

# Dropped files named in the figures; the count has them all.
DROPPED_NAMES = 10
# Leaks listed per file when refusing (every file with any is named).
LEAKS_PER_FILE = 5
# A cell holding one address and nothing else (the local part as loose as the sign-up form's).
WHOLE_ADDRESS = re.compile(r"[^\s@,;:<>()\"\[\]]+@[\w-]+(?:\.[\w-]+)*")


def event_uuids(connection) -> dict[tuple[str, int], str]:
    """(table, id) -> uuid for every event that has rider lists."""
    found = {}
    for kind in KINDS.values():
        table = kind.__table__
        for event_id, event_uuid in connection.execute(select(table.c.id, table.c.uuid)):
            found[(table.name, event_id)] = event_uuid
    return found


def sanitize_cell(value: str, options: Options) -> str:
    """A cell that is one address (the Email column) goes to the sink whole, as the database's
    address columns do: the sign-up form accepts characters (a!b@example.org) where free text's
    address pattern stops, and the rider list must still get the database's sink address. Any
    other text is scrubbed like the database's free text."""
    if "@" in value and WHOLE_ADDRESS.fullmatch(value.strip()):
        return sink_address(value, options.sink_domain, options.sink_key)
    return scrub(value, options)


# --- Reading and rewriting one file -----------------------------------------------------------


def _sanitized_csv(source: Path, options: Options):
    with open(source, newline="", encoding="utf-8") as f:
        table = [[sanitize_cell(cell, options) for cell in row] for row in csv.reader(f)]

    def write(tmp):
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            csv.writer(f).writerows(table)

    return write


def _string_cells(workbook):
    for sheet in workbook.worksheets:
        for row in sheet.iter_rows():
            for cell in row:
                if isinstance(cell.value, str):
                    yield sheet, cell


def _sanitized_xlsx(source: Path, options: Options):
    rewritten = xlsx.rewrite_cells(source, lambda value: sanitize_cell(value, options))
    if rewritten is not None:

        def write_bytes(tmp):
            Path(tmp).write_bytes(rewritten)

        return write_bytes
    # Not as the app writes it: openpyxl reads and writes the whole workbook.
    # Imported here, as app/rider_lists.py does: openpyxl is slow to import.
    from openpyxl import load_workbook

    workbook = load_workbook(source)
    for _sheet, cell in _string_cells(workbook):
        value = sanitize_cell(cell.value, options)
        if value != cell.value:
            kind = cell.data_type  # a text cell stays text even if it now starts with "="
            cell.value = value
            cell.data_type = kind
    return workbook.save


# One per format of app/rider_lists.py's FORMATS (a test checks): a format without one is dropped.
SANITIZERS = {"csv": _sanitized_csv, "xlsx": _sanitized_xlsx}


# --- Scanning what was written ------------------------------------------------------------------


def file_leaks(path: Path, options: Options) -> list[str]:
    """What `leaks_in` finds in a written file, each as 'name where: what in text'."""
    if path.suffix == ".csv":
        found = []
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            found += _judged(path, f"line {number}", line, options)
        return found
    texts = xlsx.texts(path)
    if texts is None:
        return _workbook_leaks(path, options)
    domain = options.production_domain
    found = [
        leak
        for where, text in texts
        if "@" in text or may_hold_hostname(text, domain)  # leaks_in's own test, sooner
        for leak in _judged(path, where, text, options, False)
    ]
    # Refused: openpyxl names the cells.
    return (_workbook_leaks(path, options) or found) if found else []


def _judged(path: Path, where: str, value: str, options: Options, whole_value=True) -> list[str]:
    return [
        f"{path.name} {where}: {what} in {(value[:80] if whole_value else text)!r}"
        for what, text in leaks_in(value, options.sink_domain, options.production_domain)
    ]


def _workbook_leaks(path: Path, options: Options) -> list[str]:
    """Every string cell as openpyxl reads it, and every part of the zip whole."""
    from openpyxl import load_workbook

    found = []
    for sheet, cell in _string_cells(load_workbook(path)):
        found += _judged(path, f"{sheet.title}!{cell.coordinate}", cell.value, options)
    with zipfile.ZipFile(path) as archive:
        for name in archive.namelist():
            text = archive.read(name).decode("utf-8", "replace")
            found += _judged(path, name, text, options, whole_value=False)
    return found


# --- The copy ---------------------------------------------------------------------------------


class RiderListCopy:
    """Production's rider lists in `source` (the mirror) -> staging's in `target`."""

    def __init__(self, source, target):
        self.source = Path(source)
        self.target = Path(target)
        self.written: list[Path] = []
        self.created_target = False

    def refusal(self) -> str | None:
        """Why the copy cannot start, checked before anything is changed; None if it can."""
        if not self.source.is_dir():
            return f"--rider-lists-from {self.source}: not a directory"
        if self.target.exists() and (not self.target.is_dir() or any(self.target.iterdir())):
            return f"--rider-lists-to {self.target}: exists and is not an empty directory"
        source, target = self.source.resolve(), self.target.resolve()
        if source == target or source in target.parents or target in source.parents:
            return "--rider-lists-from and --rider-lists-to must not be inside one another"
        return None

    def write(self, renamed: dict[str, str], options: Options) -> dict:
        """Write each mirrored file of an event under its new uuid (`renamed`: old -> new),
        sanitised, then scan them all. Returns the figures; on SanitizeError (a file that cannot
        be read, or anything left) what was written has been removed."""
        self.prepare(set(renamed), options)
        return self.finish(renamed)

    def prepare(self, events: set[str], options: Options) -> None:
        """`write`'s work before the new uuids are known, so that it can run while the database
        is being sanitised: each mirrored file of one of `events` (old uuids) written sanitised
        under a name of no event, and scanned. `finish` names them."""
        self.created_target = not self.target.exists()
        self.target.mkdir(parents=True, exist_ok=True)
        self.dropped, self.prepared = [], []
        try:
            for entry in sorted(self.source.iterdir()):
                stem, dot, ext = entry.name.rpartition(".")
                known = dot and ext in SANITIZERS and stem in events
                if entry.is_symlink() or not entry.is_file() or not known:
                    self.dropped.append(entry.name + ("/" if entry.is_dir() else ""))
                    continue
                try:
                    write = SANITIZERS[ext](entry, options)
                except Exception as error:  # whatever a damaged file makes the reader raise
                    raise SanitizeError(f"cannot read rider list {entry}: {error!r}") from None
                path = self.target / f".sanitized-{len(self.prepared)}.{ext}"
                self.written.append(path)
                write_atomically(path, write)
                self.prepared.append((path, stem, ext))
            leaks = [file_leaks(path, options) for path, _stem, _ext in self.prepared]
            if any(leaks):
                raise SanitizeError(
                    f"left in rider lists after sanitising ({sum(map(len, leaks))} in "
                    f"{sum(map(bool, leaks))} file(s); at most {LEAKS_PER_FILE} a file listed):"
                    + "".join(f"\n  {leak}" for found in leaks for leak in found[:LEAKS_PER_FILE])
                )
        except BaseException:
            self.remove()
            raise

    def finish(self, renamed: dict[str, str]) -> dict:
        """Name each prepared file by its event's new uuid (`renamed`: old -> new); returns the
        figures."""
        try:
            for path, stem, ext in self.prepared:
                final = self.target / f"{renamed[stem]}.{ext}"
                self.written.append(final)
                os.replace(path, final)
        except BaseException:
            self.remove()
            raise
        self.written = [path for path in self.written if path.exists()]
        return {
            "written": len(self.written),
            "dropped": len(self.dropped),
            "dropped_names": self.dropped[:DROPPED_NAMES],
            "bytes": sum(path.stat().st_size for path in self.written),
        }

    def remove(self) -> None:
        """Remove what `write` wrote (and the target directory, if it made it)."""
        for path in self.written:
            path.unlink(missing_ok=True)
        self.written = []
        if self.created_target:
            try:
                self.target.rmdir()
            except OSError:
                pass
            self.created_target = False
