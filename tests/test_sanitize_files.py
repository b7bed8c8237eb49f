"""Staging's rider lists from a mirror of production's: renamed to the events' new secret uuids,
every address sent to the same sink address as in the database, nothing else of production's
written, and a final scan that refuses and cleans up if anything is left."""

import csv
import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import uuid
import zipfile
from pathlib import Path

import pytest
from openpyxl import load_workbook
from openpyxl.comments import Comment

from app.rider_lists import FORMATS, write_rider_list
from app.sanitize import cli
from app.sanitize import files as sanitize_files
from app.sanitize.rules import Options, SanitizeError, scrub, sink_address
from tests.conftest import ROOT, WRANGLER_EMAIL
from tests.factories import make_brevet, make_brevet_rider, make_populaire, make_populaire_rider
from tests.test_sanitize import (
    EMAIL_LIKE,
    PRODUCTION,
    PRODUCTION_HOST,
    SINK,
    SINK_KEY,
    STAGING,
    STAGING_PASSWORD,
    database_path,
    leftovers,
    rows,
    sink_key_file,
    write_ini,
)

# Every address the fixture puts in the rider lists, as production has them.
ORIGINALS = [
    "ada@example.org",
    "a!b@example.org",  # the sign-up form accepts it; free text's pattern would stop at "!"
    "eddy@example.org",
    "eddy.m@mail.example.com",
    "bags@club.example.net",
]
ODD = "a!b@example.org"


@pytest.fixture
def production(app_settings, db, tmp_path):
    """Events and riders as production could hold them, and production's rider lists as the
    sync mirrors them: the events' files, plus files of no event and a subdirectory."""
    brevet = make_brevet(
        db,
        info_question=f"Drop bag? See https://{PRODUCTION}/help or ask bags@club.example.net",
    )
    populaire = make_populaire(db)
    make_brevet_rider(db, brevet, email="ada@example.org", first_name="Ada", info_answer="yes")
    make_brevet_rider(db, brevet, email=ODD, first_name="Odd")
    make_brevet_rider(
        db,
        brevet,
        email="eddy@example.org",
        comment="or text me at eddy.m@mail.example.com",
        info_answer=f"no, as on https://{PRODUCTION}/brevets",
    )
    make_populaire_rider(db, populaire, email="ada@example.org", first_name="Ada")
    db.commit()
    db.expire_all()

    mirror = tmp_path / "mirror"
    for event in (brevet, populaire):
        write_rider_list({"rider_lists_dir": str(mirror)}, event)
    unknown = uuid.uuid4()
    (mirror / f"{unknown}.csv").write_text("Email\ngone@example.org\n")
    (mirror / "notes.txt").write_text("ada@example.org\n")
    (mirror / f".{brevet.uuid}.csv.k2j3h4").write_text("ada@example.org\n")  # a crash's leftover
    (mirror / "old").mkdir()
    (mirror / "old" / f"{brevet.uuid}.csv").write_text("ada@example.org\n")
    return {
        "brevet": brevet,
        "populaire": populaire,
        "mirror": mirror,
        "out": tmp_path / "work" / "rider_lists",
        "ini": write_ini(tmp_path, app_settings, **{"mail.only_to_domains": SINK}),
        "sink_key": sink_key_file(tmp_path),
        "dropped": sorted([f"{unknown}.csv", "notes.txt", f".{brevet.uuid}.csv.k2j3h4", "old/"]),
    }


def arguments(production, **overrides) -> list[str]:
    options = {
        "--production-domain": PRODUCTION,
        "--staging-domain": STAGING,
        "--rider-lists-from": str(production["mirror"]),
        "--rider-lists-to": str(production["out"]),
        "--sink-key-file": production["sink_key"],
        **overrides,
    }
    return [production["ini"]] + [s for k, v in options.items() if v is not None for s in (k, v)]


def run_main(production, monkeypatch, **overrides) -> int:
    monkeypatch.setenv("RANDOPONY_WRANGLER_PASSWORD", STAGING_PASSWORD)
    return cli.main(arguments(production, **overrides))


def event_uuid(app_settings, event) -> str:
    [(value,)] = rows(app_settings, f"SELECT uuid FROM {event.__tablename__} WHERE id={event.id}")
    return value


def fingerprint(folder: Path) -> dict[str, str]:
    """Every file under `folder` and a digest of its bytes."""
    if not folder.exists():
        return {}
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def csv_rows(path: Path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


def xlsx_rows(path: Path) -> list[list]:
    return [list(row) for row in load_workbook(path).active.iter_rows(values_only=True)]


def texts_of(path: Path) -> list[str]:
    """All the text a file holds: a CSV's, and every part of an XLSX's zip, uncompressed."""
    if path.suffix == ".csv":
        return [path.read_text(encoding="utf-8")]
    with zipfile.ZipFile(path) as archive:
        return [archive.read(name).decode("utf-8", "replace") for name in archive.namelist()]


# --- Sanitising the rider lists -----------------------------------------------------------------


def test_rider_lists_are_renamed_to_the_new_uuids_and_hold_the_databases_sink_addresses(
    app_settings, production
):
    """Run as deploy/sync.py runs it: a process, the database given by RANDOPONY_DB_URL."""
    brevet, populaire, mirror, out = (
        production[k] for k in ("brevet", "populaire", "mirror", "out")
    )
    mirrored = fingerprint(mirror)
    assert sink_address(ODD, SINK, SINK_KEY) != scrub(
        ODD, Options(SINK, PRODUCTION, STAGING, "", SINK_KEY)
    )

    answer = subprocess.run(
        [sys.executable, "-m", "app.sanitize", *arguments(production)],
        cwd=ROOT,
        env={
            **os.environ,
            "RANDOPONY_DB_URL": f"sqlite:///{database_path(app_settings)}",
            "RANDOPONY_WRANGLER_PASSWORD": STAGING_PASSWORD,
        },
        capture_output=True,
        text=True,
    )
    assert answer.returncode == 0, answer.stderr
    report = json.loads(answer.stdout.strip().splitlines()[-1])

    # Named by the new secret uuids only.
    new_brevet, new_populaire = (
        event_uuid(app_settings, brevet),
        event_uuid(app_settings, populaire),
    )
    assert new_brevet != brevet.uuid and new_populaire != populaire.uuid
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"{u}.{ext}" for u in (new_brevet, new_populaire) for ext in ("csv", "xlsx")
    )

    # The same sink addresses as the database's rows, in both formats.
    by_name = dict(rows(app_settings, "SELECT first_name, email FROM brevet_riders"))
    assert sorted(by_name.values()) == sorted(
        sink_address(a, SINK, SINK_KEY) for a in ORIGINALS[:3]
    )
    [(question,)] = rows(app_settings, "SELECT info_question FROM brevets")
    [(comment,)] = rows(app_settings, "SELECT comment FROM brevet_riders WHERE comment <> ''")
    for table in (csv_rows(out / f"{new_brevet}.csv"), xlsx_rows(out / f"{new_brevet}.xlsx")):
        header, *body = table
        first_name, email = header.index("First name"), header.index("Email")
        assert header[email + 3] == question  # the info question's column
        assert {row[first_name]: row[email] for row in body} == by_name
        assert [row[header.index("Comment")] for row in body if row[first_name] == "Eddy"] == [
            comment
        ]
    [(populaire_email,)] = rows(app_settings, "SELECT email FROM populaire_riders")
    for table in (csv_rows(out / f"{new_populaire}.csv"), xlsx_rows(out / f"{new_populaire}.xlsx")):
        assert [row[2] for row in table] == ["Email", populaire_email]

    # Nothing of production's in any part of any file.
    for path in out.iterdir():
        for text in texts_of(path):
            assert not any(original in text for original in ORIGINALS), path.name
            assert all(domain == SINK for domain in EMAIL_LIKE.findall(text)), path.name
            assert not PRODUCTION_HOST.search(text), path.name
            assert brevet.uuid not in text and populaire.uuid not in text
    # riders' addresses: readable by the app (their owner) only
    assert {oct(path.stat().st_mode & 0o777) for path in out.iterdir()} == {"0o600"}
    assert leftovers(app_settings) == []

    assert report["files"] == {
        "written": 4,
        "dropped": 4,
        "dropped_names": production["dropped"],
        "bytes": sum(path.stat().st_size for path in out.iterdir()),
    }
    with sqlite3.connect(database_path(app_settings)) as connection:
        tables = [
            n for (n,) in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")
        ]
        assert report["rows"] == {
            t: connection.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables
        }
    assert report["rows"]["brevet_riders"] == 3 and report["rows"]["outbound_emails"] == 0
    assert report["wranglers"] == [sink_address(WRANGLER_EMAIL, SINK, SINK_KEY)]
    assert report["brevet_riders"] == 3 and report["populaire_riders"] == 1  # the existing keys
    assert fingerprint(mirror) == mirrored  # the mirror is only read


def test_without_the_rider_list_options_no_files_and_the_same_figures(
    app_settings, production, monkeypatch, capsys
):
    assert (
        run_main(production, monkeypatch, **{"--rider-lists-from": None, "--rider-lists-to": None})
        == 0
    )
    report = json.loads(capsys.readouterr().out)
    assert "files" not in report and not production["out"].exists()
    assert report["wranglers"] == [sink_address(WRANGLER_EMAIL, SINK, SINK_KEY)]
    assert report["rows"]["brevets"] == 1


def test_an_empty_target_directory_is_fine(app_settings, production, monkeypatch, capsys):
    production["out"].mkdir(parents=True)
    assert run_main(production, monkeypatch) == 0
    assert json.loads(capsys.readouterr().out)["files"]["written"] == 4


# --- Refusals ---------------------------------------------------------------------------------


def database_untouched(app_settings, production) -> bool:
    return event_uuid(app_settings, production["brevet"]) == production["brevet"].uuid and (
        "brevet_riders",
        "email",
        "ada@example.org",
    ) in leftovers(app_settings)


@pytest.mark.parametrize("target", ["not empty", "a file", "inside the mirror"])
def test_a_target_that_is_not_empty_is_refused_before_anything_changes(
    app_settings, production, monkeypatch, capsys, target
):
    out = production["out"]
    if target == "not empty":
        out.mkdir(parents=True)
        (out / "staging's own.csv").write_text("kept\n")
    elif target == "a file":
        out.parent.mkdir(parents=True)
        out.write_text("kept\n")
    else:
        out = production["mirror"] / "new"
    before = fingerprint(out.parent)

    assert run_main(production, monkeypatch, **{"--rider-lists-to": str(out)}) == 2

    assert "--rider-lists" in capsys.readouterr().err
    assert fingerprint(out.parent) == before
    assert not (production["mirror"] / "new").exists()
    assert database_untouched(app_settings, production)


def test_a_mirror_that_is_not_there_is_refused(app_settings, production, monkeypatch, capsys):
    missing = str(production["mirror"].parent / "no-such-mirror")
    assert run_main(production, monkeypatch, **{"--rider-lists-from": missing}) == 2
    assert "not a directory" in capsys.readouterr().err
    assert not production["out"].exists()
    assert database_untouched(app_settings, production)


@pytest.mark.parametrize("given", ["--rider-lists-from", "--rider-lists-to"])
def test_the_rider_list_options_go_together(production, monkeypatch, capsys, given):
    other = {"--rider-lists-from": "--rider-lists-to", "--rider-lists-to": "--rider-lists-from"}
    with pytest.raises(SystemExit) as raised:
        run_main(production, monkeypatch, **{other[given]: None})
    assert raised.value.code == 2
    assert "give both or neither" in capsys.readouterr().err


@pytest.mark.parametrize("existed", [False, True])
def test_anything_left_in_a_file_refuses_and_removes_what_was_written(
    app_settings, production, monkeypatch, capsys, existed
):
    """If the cells went through unsanitised, the scan finds them: nothing stays written and the
    database's transaction is rolled back."""
    if existed:
        production["out"].mkdir(parents=True)
    written = []
    real_write = sanitize_files.write_atomically

    def write_and_note(path, write):
        written.append(path)
        real_write(path, write)

    monkeypatch.setattr(sanitize_files, "sanitize_cell", lambda value, _options: value)
    monkeypatch.setattr(sanitize_files, "write_atomically", write_and_note)

    assert run_main(production, monkeypatch) == 2

    err = capsys.readouterr().err
    assert "left in rider lists after sanitising" in err
    assert "an address outside the sink in 'Merckx,Ada,ada@example.org" in err
    assert "Riders!C2: an address outside the sink" in err
    assert "the production hostname" in err
    assert len(written) == 4 and not any(path.exists() for path in written)  # written, then removed
    assert production["out"].exists() == existed
    assert existed is False or list(production["out"].iterdir()) == []
    assert database_untouched(app_settings, production)


def test_a_part_of_a_workbook_that_is_not_a_cell_is_scanned_too(
    app_settings, production, monkeypatch, capsys
):
    """A hyperlink and a comment are not string cells, so sanitising passes them through as they
    are: the scan of the whole file refuses them."""
    path = production["mirror"] / f"{production['brevet'].uuid}.xlsx"
    workbook = load_workbook(path)
    workbook.active["A2"].hyperlink = "mailto:ada@example.org"
    workbook.active["B2"].comment = Comment(f"see https://{PRODUCTION}/riders", "organizer")
    workbook.save(path)

    assert run_main(production, monkeypatch) == 2

    err = capsys.readouterr().err
    assert "an address outside the sink in 'ada@example.org'" in err
    assert f"the production hostname in '{PRODUCTION}'" in err
    assert "Riders!" not in err  # the cells themselves were sanitised
    assert not production["out"].exists()
    assert database_untouched(app_settings, production)


def test_a_damaged_rider_list_is_refused(app_settings, production, monkeypatch, capsys):
    (production["mirror"] / f"{production['populaire'].uuid}.xlsx").write_bytes(b"not a zip")
    assert run_main(production, monkeypatch) == 2
    assert "cannot read rider list" in capsys.readouterr().err
    assert not production["out"].exists()
    assert database_untouched(app_settings, production)


def test_a_failure_after_the_files_are_written_removes_them_and_rolls_back(
    app_settings, production, monkeypatch
):
    def broken(_connection):
        raise RuntimeError("the disk filled up")

    monkeypatch.setattr(cli, "row_counts", broken)  # runs after the files are written
    with pytest.raises(RuntimeError, match="disk filled up"):
        run_main(production, monkeypatch)
    assert not production["out"].exists()
    assert database_untouched(app_settings, production)


def test_the_copy_cleans_up_after_itself_when_its_scan_refuses(production, monkeypatch):
    options = Options(SINK, PRODUCTION, STAGING, "", SINK_KEY)
    copy = sanitize_files.RiderListCopy(production["mirror"], production["out"])
    brevet = production["brevet"]
    monkeypatch.setattr(sanitize_files, "sanitize_cell", lambda value, _options: value)
    with pytest.raises(SanitizeError, match="left in rider lists"):
        copy.write({brevet.uuid: str(uuid.uuid4())}, options)
    assert not production["out"].exists() and copy.written == []


# --- What is copied as it is ------------------------------------------------------------------


def test_a_symbolic_link_in_the_mirror_is_not_followed(
    app_settings, production, monkeypatch, capsys
):
    name = f"{production['populaire'].uuid}.csv"
    outside = production["mirror"].parent / "outside.csv"
    (production["mirror"] / name).rename(outside)
    (production["mirror"] / name).symlink_to(outside)
    assert run_main(production, monkeypatch) == 0
    files = json.loads(capsys.readouterr().out)["files"]
    assert files["written"] == 3 and name in files["dropped_names"]


def test_a_text_cell_stays_text_even_when_it_reads_like_a_formula(
    app_settings, production, monkeypatch
):
    path = production["mirror"] / f"{production['brevet'].uuid}.xlsx"
    workbook = load_workbook(path)
    cell = workbook.active["H2"]
    cell.value, cell.data_type = "=ask ada@example.org", "s"
    workbook.save(path)

    assert run_main(production, monkeypatch) == 0

    new = event_uuid(app_settings, production["brevet"])
    cell = load_workbook(production["out"] / f"{new}.xlsx").active["H2"]
    assert (cell.value, cell.data_type) == (
        f"=ask {sink_address('ada@example.org', SINK, SINK_KEY)}",
        "s",
    )


def test_every_rider_list_format_has_a_sanitizer():
    assert sorted(sanitize_files.SANITIZERS) == sorted(FORMATS)


# --- Workbooks rewritten at the level of their XML (app/sanitize/xlsx.py) ------------------------

ODD_CELLS = [
    "a & b <c> \"quoted\" 'single'",
    "  spaced  ",
    "two\r\nlines\rand one",
    "=ask ada@example.org",
    f"see https://{PRODUCTION}/x & ada@example.org",
    "a!b@example.org",
    "Zoë <zoe@example.org>",
    f"HTTPS://{PRODUCTION.upper()}/",
]


def odd_workbook(path: Path, formula: bool = False) -> None:
    """A workbook as app/rider_lists.py writes one (openpyxl, text cells), with odd text."""
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    sheet.title = "Riders"
    sheet.append(["Last name", "Email", "Comment", "Registered"])
    for i, text in enumerate(ODD_CELLS):
        sheet.append([f"L{i}", ORIGINALS[i % len(ORIGINALS)], text, 42])
    for row in sheet.iter_rows():
        for cell in row:
            if cell.data_type == "f":
                cell.data_type = "s"  # as rider_lists.py keeps "=..." text
    if formula:
        sheet["E2"] = "=LEN(C2)"
    book.save(path)


def cells(path: Path) -> list[list[tuple]]:
    return [
        [(cell.value, cell.data_type) for cell in row]
        for row in load_workbook(path).active.iter_rows()
    ]


def test_a_workbook_as_the_app_writes_it_is_rewritten_as_openpyxl_rewrites_it(
    tmp_path, monkeypatch
):
    options = Options(SINK, PRODUCTION, STAGING, "", SINK_KEY)
    source = tmp_path / "list.xlsx"
    odd_workbook(source)
    assert sanitize_files.xlsx.texts(source) is not None  # the inline form: the XML way
    sanitize_files._sanitized_xlsx(source, options)(tmp_path / "xml.xlsx")
    monkeypatch.setattr(sanitize_files.xlsx, "rewrite_cells", lambda *_: None)
    sanitize_files._sanitized_xlsx(source, options)(tmp_path / "openpyxl.xlsx")

    assert cells(tmp_path / "xml.xlsx") == cells(tmp_path / "openpyxl.xlsx")
    assert cells(tmp_path / "xml.xlsx") != cells(source)  # not vacuous
    assert [row[1][0] for row in cells(tmp_path / "xml.xlsx")[1:]] == [
        sink_address(ORIGINALS[i % len(ORIGINALS)], SINK, SINK_KEY) for i in range(len(ODD_CELLS))
    ]
    for text in texts_of(tmp_path / "xml.xlsx"):
        assert all(domain == SINK for domain in EMAIL_LIKE.findall(text))
        assert not PRODUCTION_HOST.search(text)
    assert sanitize_files.file_leaks(tmp_path / "xml.xlsx", options) == []


def test_a_workbook_in_another_form_takes_openpyxl_s_way(tmp_path):
    """A formula is not read by the XML way: the workbook goes through openpyxl, still
    sanitised."""
    options = Options(SINK, PRODUCTION, STAGING, "", SINK_KEY)
    source = tmp_path / "list.xlsx"
    odd_workbook(source, formula=True)
    assert sanitize_files.xlsx.texts(source) is None
    assert sanitize_files.xlsx.rewrite_cells(source, str) is None
    sanitize_files._sanitized_xlsx(source, options)(tmp_path / "out.xlsx")
    assert load_workbook(tmp_path / "out.xlsx").active["E2"].value == "=LEN(C2)"
    assert sanitize_files.file_leaks(tmp_path / "out.xlsx", options) == []
    assert sanitize_files.file_leaks(source, options) != []


def test_a_leak_outside_the_cells_of_a_worksheet_is_found(
    app_settings, production, monkeypatch, capsys
):
    """The XML way rewrites only the text cells; the scan reads the rest of the worksheet's XML
    too (here a page header) and refuses."""
    path = production["mirror"] / f"{production['brevet'].uuid}.xlsx"
    workbook = load_workbook(path)
    workbook.active.oddHeader.center.text = "Questions: ada@example.org"
    workbook.save(path)
    assert sanitize_files.xlsx.texts(path) is not None

    assert run_main(production, monkeypatch) == 2

    err = capsys.readouterr().err
    assert "xl/worksheets/sheet1.xml: an address outside the sink in 'ada@example.org'" in err
    assert "Riders!" not in err
    assert not production["out"].exists()
    assert database_untouched(app_settings, production)
