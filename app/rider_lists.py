"""Each event's rider list, as XLSX and CSV files organizers download through a secret link.

(The original site kept rider lists in Google spreadsheets through an API that no longer exists.)
"""

import csv
import logging
import os
import tempfile
from pathlib import Path

from .models import Brevet, Populaire

log = logging.getLogger(__name__)

FORMATS = ("xlsx", "csv")
KINDS = {"brevet": Brevet, "populaire": Populaire}


def rider_lists_dir(settings) -> Path:
    return Path(settings.get("rider_lists_dir", "rider_lists"))


def rider_list_path(settings, event, ext: str) -> Path:
    return rider_lists_dir(settings) / f"{event.uuid}.{ext}"


def rows(event) -> list[list]:
    if isinstance(event, Brevet):
        header = ["Last name", "First name", "Email", "Bike", "Membership"]
        if event.info_question:
            header.append(event.info_question)
        header += ["Comment", "Registered"]
        body = []
        for r in event.riders:
            row = [r.last_name, r.first_name, r.email, r.bike_type, r.membership]
            if event.info_question:
                row.append(r.info_answer or "")
            body.append(row + [r.comment or "", r.registered_at.strftime("%Y-%m-%d %H:%M")])
    else:
        header = ["Last name", "First name", "Email", "Distance", "Comment", "Registered"]
        body = [
            [
                r.last_name,
                r.first_name,
                r.email,
                r.distance or "",
                r.comment or "",
                r.registered_at.strftime("%Y-%m-%d %H:%M"),
            ]
            for r in event.riders
        ]
    return [header] + body


# A spreadsheet runs a cell starting with one of these as a formula; riders type the cells.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def as_text_for_csv(value):
    """What a rider typed, never a formula when an organizer opens the CSV in a spreadsheet
    (OWASP's CSV injection advice: a leading apostrophe)."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def write_atomically(path: Path, write) -> None:
    """Readers see the old file or the new one, never half of one. The file stays 0600, as
    mkstemp makes it: it holds riders' addresses, and only the app (its owner) serves it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def write_rider_list(settings, event) -> list[Path]:
    """Write the event's rider list in every format; returns the files written."""
    table = rows(event)

    def write_csv(tmp):
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            csv.writer(f).writerows([as_text_for_csv(v) for v in row] for row in table)

    def write_xlsx(tmp):
        # Imported here: openpyxl is a third of a second of every process start otherwise.
        from openpyxl import Workbook
        from openpyxl.styles import Font

        workbook = Workbook()
        sheet = workbook.active
        sheet.title = "Riders"
        from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

        for row in table:
            # A character a spreadsheet cannot hold (a control character typed before the form
            # refused them) is shown as U+FFFD instead of failing the whole list.
            sheet.append(
                [ILLEGAL_CHARACTERS_RE.sub("\ufffd", v) if isinstance(v, str) else v for v in row]
            )
            for cell in sheet[sheet.max_row]:
                if cell.data_type == "f":  # openpyxl takes any "=..." string for a formula
                    cell.data_type = "s"
        for cell in sheet[1]:
            cell.font = Font(bold=True)
        sheet.freeze_panes = "A2"
        workbook.save(tmp)

    # Each format on its own: one that fails leaves the other written, and says why in the log.
    paths, errors = [], []
    for ext, write in (("csv", write_csv), ("xlsx", write_xlsx)):
        path = rider_list_path(settings, event, ext)
        try:
            write_atomically(path, write)
        except Exception as error:
            log.exception("the %s rider list of %s could not be written", ext, event.title)
            errors.append(error)
            continue
        paths.append(path)
    if not paths:
        raise errors[0]
    return paths
