"""An app started in standby (a release started ahead of a cutover) opens no database until its
release's standby file is gone, then serves the database that was put in place meanwhile."""

import shutil

import pytest
import webtest

from app import main
from tests.conftest import settings_for

pytestmark = pytest.mark.own_database


@pytest.fixture
def standby_release(tmp_path, template_db):
    """A release directory as a promotion leaves it before the hold: the standby file, and no
    database or broker file yet (they are copied in under the hold)."""
    flag = tmp_path / "standby"
    flag.write_text("")
    settings = settings_for(tmp_path, standby_file=str(flag))
    return tmp_path, flag, settings


def test_answers_503_and_creates_no_database_file(standby_release):
    folder, _, settings = standby_release
    app = webtest.TestApp(main({}, **settings), extra_environ={"HTTP_HOST": "randopony.localhost"})
    up = app.get("/up", status=503)
    assert up.json["status"] == "standby"
    app.get("/", status=503)
    app.post("/brevets/LM/200/09Dec2026", {"first_name": "A"}, status=503)
    assert sorted(p.name for p in folder.iterdir()) == ["standby"]


def test_serves_the_database_put_in_place_once_the_file_is_gone(standby_release, template_db):
    folder, flag, settings = standby_release
    app = webtest.TestApp(main({}, **settings), extra_environ={"HTTP_HOST": "randopony.localhost"})
    app.get("/up", status=503)
    shutil.copy(template_db, folder / "RandoPony-testing.sqlite")  # the hold's copy
    flag.unlink()
    assert app.get("/up").json["status"] == "ok"
    assert "RandoPony" in app.get("/").text
    flag.write_text("")  # looked at no more once the app has left standby
    app.get("/up", status=200)


def test_an_app_started_without_the_file_never_waits(tmp_path, template_db):
    shutil.copy(template_db, tmp_path / "RandoPony-testing.sqlite")
    flag = tmp_path / "standby"
    settings = settings_for(tmp_path, standby_file=str(flag))
    app = webtest.TestApp(main({}, **settings), extra_environ={"HTTP_HOST": "randopony.localhost"})
    flag.write_text("")
    assert app.get("/up").json["status"] == "ok"
