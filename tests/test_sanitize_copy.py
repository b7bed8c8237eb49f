"""The sanitised database written as a new file (app/sanitize/sanitized_copy.py), the way the
command line sanitises a SQLite database: the same rows as the rules leave them row by row, with
one worker or two; the final scan of the new file refuses what the rules leave, wherever it is;
the original is replaced whole, or not at all."""

import hashlib
import json
import re
import sqlite3
from pathlib import Path

import pytest

from app.sanitize import cli, rules, sanitized_copy
from tests.test_sanitize import (
    PRODUCTION,
    SINK,
    SINK_KEY,
    STAGING,
    STAGING_PASSWORD,
    add_odd_rows,
    content,
    copy_database,
    database_path,
    fill_production_like,
    leftovers,
    rows,
    rules_in_python,
    sink_key_file,
    write_ini,
)


@pytest.fixture(autouse=True)
def fixed_password_hash(monkeypatch):
    # The staging password's hash has a salt: made the same for comparing databases.
    monkeypatch.setattr(rules, "_hash", lambda password: f"hash of {password}")


@pytest.fixture
def production_like(db):
    return fill_production_like(db)


@pytest.fixture
def workers(request, monkeypatch):
    """1: one process does it all; 2: two workers, each writing a part (a few rows are enough
    to share the tables between them here)."""
    count = getattr(request, "param", 2)
    monkeypatch.setattr(sanitized_copy, "ROWS_PER_WORKER", 1)
    return count


def run_cli(app_settings, tmp_path, monkeypatch, workers: int) -> int:
    monkeypatch.setenv("RANDOPONY_WRANGLER_PASSWORD", STAGING_PASSWORD)
    args = [write_ini(tmp_path, app_settings), "--production-domain", PRODUCTION]
    args += ["--staging-domain", STAGING, "--sink-key-file", sink_key_file(tmp_path)]
    return cli.main([*args, "--workers", str(workers)])


def file_digest(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def copies_left(app_settings) -> list[str]:
    folder = Path(database_path(app_settings)).parent
    return sorted(path.name for path in folder.iterdir() if ".sanitized" in path.name)


@pytest.mark.parametrize("workers", [1, 2], indirect=True)
def test_the_copy_leaves_exactly_what_the_rules_row_by_row_leave(
    app_settings, production_like, tmp_path, monkeypatch, capsys, workers
):
    add_odd_rows(app_settings, PRODUCTION)
    original = copy_database(app_settings, tmp_path / "original.sqlite")
    reference = copy_database(app_settings, tmp_path / "reference.sqlite")
    options = rules.checked_options(SINK, PRODUCTION, STAGING, STAGING_PASSWORD, SINK_KEY)
    expected_counts = rules_in_python(reference, options)

    assert run_cli(app_settings, tmp_path, monkeypatch, workers) == 0

    report = json.loads(capsys.readouterr().out)
    assert report["seconds"]["workers"] == workers
    # (The report's "wranglers" are the staging logins, not a count.)
    counted = {table: report[table] for table in expected_counts if table != "wranglers"}
    assert counted == {k: v for k, v in expected_counts.items() if k != "wranglers"}
    assert expected_counts["brevet_riders"] > 20  # not vacuous
    assert content(database_path(app_settings), original) == content(reference, original)
    assert copies_left(app_settings) == []


def test_two_workers_share_the_rows(app_settings, production_like, workers):
    add_odd_rows(app_settings, PRODUCTION)
    with sqlite3.connect(database_path(app_settings)) as connection:
        names = [
            n for (n,) in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")
        ]
    engine = sanitized_copy._engine(Path(database_path(app_settings)))
    try:
        with engine.connect() as connection:
            parts = sanitized_copy.plan(connection, names, 2)
    finally:
        engine.dispose()
    shares = [sum(unit.rows for unit in part) for part in parts]
    assert all(shares) and abs(shares[0] - shares[1]) <= 1
    # Every row of every table is in exactly one part; one table at most is cut in two.
    with sqlite3.connect(database_path(app_settings)) as connection:
        for name in names:
            ranges = sorted((u.first, u.last) for part in parts for u in part if u.table == name)
            [(first, last)] = connection.execute(f"SELECT min(rowid), max(rowid) FROM {name}")
            if first is None or name in rules.EMPTIED:  # no rows to copy
                assert ranges == [(None, None)]
            else:
                assert ranges[0][0] == first and ranges[-1][1] == last
                assert all(a[1] + 1 == b[0] for a, b in zip(ranges, ranges[1:], strict=False))
    cut = {u.table for u in parts[0]} & {u.table for u in parts[1]}
    assert len(cut) == 1


def test_the_new_file_has_the_schema_and_the_journal_of_the_old(
    app_settings, production_like, tmp_path, monkeypatch, workers
):
    path = database_path(app_settings)
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE VIEW rider_names AS SELECT first_name FROM brevet_riders")
        connection.execute(
            "CREATE TRIGGER no_empty_names BEFORE INSERT ON brevet_riders WHEN NEW.first_name = ''"
            " BEGIN SELECT RAISE(ABORT, 'empty'); END"
        )
        connection.execute("PRAGMA user_version = 7")
        connection.execute("ANALYZE")
        schema = connection.execute(
            "SELECT type, name, sql FROM sqlite_master ORDER BY name"
        ).fetchall()
        statistics = connection.execute("SELECT * FROM sqlite_stat1 ORDER BY 1, 2").fetchall()
        assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)

    assert run_cli(app_settings, tmp_path, monkeypatch, 2) == 0

    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert connection.execute("PRAGMA user_version").fetchone() == (7,)
        assert (
            connection.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name").fetchall()
            == schema
        )
        assert (
            connection.execute("SELECT * FROM sqlite_stat1 ORDER BY 1, 2").fetchall() == statistics
        )
        assert connection.execute("SELECT count(*) FROM rider_names").fetchone() == (3,)
    assert copies_left(app_settings) == []


@pytest.mark.parametrize("workers", [1, 2], indirect=True)
@pytest.mark.parametrize(
    "where",
    ["a table the models do not know", "past the scrub's own test", "a rule that leaves addresses"],
)
def test_what_the_rules_leave_is_found_by_the_final_scan_of_the_new_file(
    app_settings, production_like, tmp_path, monkeypatch, capsys, workers, where
):
    """Each leak is where the rewrite passes it over, so only the final scan can find it; the
    database stays as it was and nothing of the copy is left."""
    path = database_path(app_settings)
    with sqlite3.connect(path) as connection:
        if where == "a table the models do not know":
            connection.execute("CREATE TABLE kombu_message (id INTEGER PRIMARY KEY, payload TEXT)")
            connection.execute("INSERT INTO kombu_message (payload) VALUES (?)", (b"to a@b.org",))
            found = r"kombu_message\.payload: an address outside the sink"
        elif where == "past the scrub's own test":
            # "\u017f" (long s) is an s to the scan's pattern, which ignores case, but not to
            # str.lower(), with which the scrub decides there is nothing to rewrite.
            connection.execute(
                "UPDATE brevet_riders SET comment = ? WHERE id = 1",
                (f"see {PRODUCTION.replace('s', chr(0x17F))}/x",),
            )
            found = r"brevet_riders\.comment: the production hostname"
        else:
            # A rule that leaves the riders' addresses as they are (the populaire riders: the
            # second part's, with two workers).
            as_it_is = rules.Rule("keep", "a wrong rule", lambda value, _options: value)
            populaire_riders = {**rules.RULES["populaire_riders"], "email": as_it_is}
            monkeypatch.setattr(
                rules, "RULES", {**rules.RULES, "populaire_riders": populaire_riders}
            )
            found = r"populaire_riders\.email: an address outside the sink"
    before = file_digest(path)

    assert run_cli(app_settings, tmp_path, monkeypatch, workers) == 2

    assert re.search(found, capsys.readouterr().err)
    assert file_digest(path) == before
    assert copies_left(app_settings) == []


def test_a_worker_that_fails_leaves_the_database_as_it_was(
    app_settings, production_like, tmp_path, monkeypatch, workers
):
    path = database_path(app_settings)
    before = file_digest(path)
    real_copy = sanitized_copy._copy

    def failing(connection, unit, options):
        if unit.table == "populaire_riders":
            raise OSError("the disk filled up")
        return real_copy(connection, unit, options)

    monkeypatch.setattr(sanitized_copy, "_copy", failing)
    with pytest.raises(OSError, match="disk filled up"):
        run_cli(app_settings, tmp_path, monkeypatch, 2)
    assert file_digest(path) == before
    assert copies_left(app_settings) == []


def test_a_database_the_copy_cannot_handle_is_sanitised_in_place(
    app_settings, production_like, tmp_path, monkeypatch, capsys
):
    with sqlite3.connect(database_path(app_settings)) as connection:
        connection.execute("CREATE VIRTUAL TABLE notes USING fts5(body)")
        connection.execute("INSERT INTO notes (body) VALUES ('a plain note')")

    assert run_cli(app_settings, tmp_path, monkeypatch, 2) == 0

    captured = capsys.readouterr()
    assert "sanitising in place: notes is a virtual table" in captured.err
    assert "seconds" not in json.loads(captured.out)
    assert leftovers(app_settings) == []
    assert rows(app_settings, "SELECT body FROM notes") == [("a plain note",)]
