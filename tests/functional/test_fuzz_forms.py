"""Fuzzers for every form of the site and the admin pages.

Whatever comes in (any text and length, Unicode with control characters and line separators,
fields missing, repeated or extra, a wrong CSRF token), the answer is a clear 4xx or the form
again with its error, never a 500 or a traceback; and a request that is refused changes nothing
in the database (every table is compared before and after). One app and database per module, so
examples follow one another on the same data, as real requests do.
"""

import itertools
import re
import shutil
import sqlite3
from dataclasses import dataclass
from datetime import time
from urllib.parse import quote, urlencode

import pytest
import webtest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.orm import Session

from app import main
from app.models import get_engine
from app.models.events import URL_DATE_FORMAT
from tests.conftest import WRANGLER_EMAIL, WRANGLER_PASSWORD, fuzz_settings, settings_for
from tests.factories import in_days, make_brevet, make_populaire, make_wrangler

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
FUZZ = fuzz_settings(40)
# A refused login is counted by the backoff (app/login_throttle.py) by design.
COUNTED_WHEN_REFUSED = {"login_failures"}
# What a page that refuses a form says, one of them at least.
SERIAL = itertools.count()
PLAIN_NAME = re.compile(r"[\x20-\x7e]*")
REFUSAL_MARKS = ('class="error"', 'role="alert"', "could not accept", "larger than", "UTF-8 only")


@dataclass
class Site:
    app: webtest.TestApp
    database: str
    db: Session
    ids: dict


@pytest.fixture(scope="module")
def site(tmp_path_factory, template_db):
    """One app and database for the module (its examples commit, and `dump` reads the file), with
    argon2 at testing.ini's cheap costs for the fuzzed logins."""
    folder = tmp_path_factory.mktemp("fuzz")
    shutil.copy(template_db, folder / "RandoPony-testing.sqlite")
    app_settings = settings_for(folder, **{"login.free_failures": "1000000"})
    engine = get_engine(app_settings)
    db = Session(engine, expire_on_commit=False)
    ids = {
        "asking": make_brevet(db, info_question="Your club?", date_time=in_days(10)),
        "plain": make_brevet(db, region="SI", distance=300, date_time=in_days(12)),
        "choice": make_populaire(db, distance="50 km, 100 km"),
        "single": make_populaire(
            db, short_name="Solo", distance="25 km", date_time=in_days(6, time(9, 0))
        ),
        "other": make_wrangler(db, email="other@example.com"),
        "edited brevet": make_brevet(db, region="PR", date_time=in_days(15)),
        "edited populaire": make_populaire(db, short_name="EditMe"),
    }
    db.commit()
    app = webtest.TestApp(
        main({}, **app_settings), extra_environ={"HTTP_HOST": "randopony.localhost"}
    )
    yield Site(app, str(folder / "RandoPony-testing.sqlite"), db, ids)
    db.close()
    engine.dispose()


@pytest.fixture(scope="module")
def admin(site):
    form = site.app.get("/admin/login").forms["login"]
    form["email"], form["password"] = WRANGLER_EMAIL, WRANGLER_PASSWORD
    assert form.submit().status_int == 302
    return site.app


def dump(database: str, skip=frozenset()) -> dict:
    with sqlite3.connect(database) as connection:
        tables = [
            name
            for (name,) in connection.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
            if name not in skip
        ]
        return {
            t: connection.execute(f'SELECT * FROM "{t}" ORDER BY rowid').fetchall() for t in tables
        }


# --- What comes in ------------------------------------------------------------------------------

NASTY = st.sampled_from(
    [
        "\u2028",
        "\u2029",
        "\x00",
        "\r\n",
        "\x1b[31m",
        "\u202e",
        "\ufeff",
        "e\u0301",
        "\u0130",
        "\U0001f6b2",
        '=HYPERLINK("http://x")',
        "<script>",
        "'; DROP TABLE brevets; --",
        "%s{0}{{7*7}}",
        "@",
        ",",
        " ",
        "\t",
        "\ud7ff\ue000\uffff",
    ]
)
TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)
LONG = st.builds(lambda n, c: c * n, st.integers(40, 5000), st.sampled_from(["x", "é", "\u2028"]))
GARBAGE = st.one_of(TEXT, NASTY, LONG, st.builds(str.__add__, TEXT, NASTY))


def field(plausible: list[str]):
    """A field left out, given once, or repeated; plausible values or garbage."""
    value = st.one_of(
        st.sampled_from(plausible),
        GARBAGE,
        st.builds(str.__add__, st.sampled_from(plausible), NASTY),
    )
    return st.one_of(st.none(), value.map(lambda v: [v]), st.lists(value, min_size=2, max_size=3))


@st.composite
def form(draw, fields: dict[str, list[str]]):
    """A whole POST: every field valid (the first plausible value) but up to three, so that
    forms get through to the code behind validation; extra fields; sometimes a wrong token;
    urlencoded, or multipart with some fields sent as files, or with bytes that are not UTF-8,
    or declared in another charset."""
    names = list(fields)
    values = {name: [plausible[0]] for name, plausible in fields.items()}
    if names:
        for name in draw(st.lists(st.sampled_from(names), max_size=3, unique=True)):
            values[name] = draw(field(fields[name]))
    extra = draw(st.lists(st.tuples(TEXT, GARBAGE), max_size=2))
    token = draw(st.one_of(st.none(), GARBAGE)) if draw(st.integers(0, 4)) == 0 else None
    encoding = draw(
        st.sampled_from(["urlencoded"] * 4 + ["multipart", "not utf-8", "declared latin-1"])
    )
    odd = draw(st.lists(st.sampled_from(names), max_size=2, unique=True)) if names else []
    return Example(values, extra, token, encoding, odd)


@dataclass
class Example:
    values: dict
    extra: list
    token: str | None
    encoding: str
    odd: list  # fields sent as files (multipart) or as bytes that are not UTF-8


def send(app, path, example: Example):
    token = example.token
    if token is None:
        token = CSRF.search(app.get("/admin/login").text).group(1)
    pairs = [("csrf_token", token)]
    for name, given_values in example.values.items():
        if example.encoding == "urlencoded" or name not in example.odd:
            pairs += [(name, v) for v in given_values or []]
    pairs += example.extra
    kwargs = {"status": "*", "expect_errors": True}
    if example.encoding == "multipart":
        # webtest writes multipart field names as ASCII; browsers quote the rest anyway.
        pairs = [(n, v) for n, v in pairs if PLAIN_NAME.fullmatch(n)]
        files = [(name, "x.txt", b"\xff\x00 not text") for name in example.odd]
        return app.post(path, pairs, upload_files=files, **kwargs)
    body = urlencode(pairs)
    if example.encoding == "not utf-8":
        body += "".join(f"&{quote(name)}=%FF%C0%AF" for name in example.odd)
    content_type = "application/x-www-form-urlencoded"
    if example.encoding == "declared latin-1":
        content_type += "; charset=latin-1"
    return app.post(path, body.encode(), content_type=content_type, **kwargs)


def post(site, app, path, example, skip=frozenset()):
    """POST and check: no 500, no traceback; refused means clearly refused and nothing changed."""
    before = dump(site.database, skip)
    response = send(app, path, example)
    assert response.status_int < 500, response.text[:2000]
    assert "Traceback" not in response.text
    if response.status_int in (302, 303):
        return response
    assert dump(site.database, skip) == before, f"{path} refused ({response.status_int}) but wrote"
    if response.status_int >= 400 and response.status_int != 404:
        assert any(mark in response.text for mark in REFUSAL_MARKS), response.text[:2000]
    return response


EMAILS = [
    "rider@example.com",
    "Rider@Example.com ",
    "Ada.Lovelace@Example.org",
    "a@b",
    "x@example.com, y@example.com",
]
NAMES = ["Eddy", "Eddy\u2028", "Émilie", "O'Brien", "Van der Berg"]
DATES = ["2030-05-01", "2030-04-30", "2026-02-29", "1999-12-31", "2030-13-01", "01/05/2030", ""]
TIMES = ["07:00", "24:00", "7:00", "06:30:00", ""]
URLS = ["https://example.com/map", "javascript:alert(1)", "http://", "ftp://x"]

RIDER = {"email": EMAILS, "first_name": NAMES, "last_name": NAMES, "comment": ["Hi", ""]}


def event_path(site, key):
    event = site.ids[key]
    if key in ("asking", "plain"):
        when = event.date_time.strftime(URL_DATE_FORMAT)
        return f"/brevets/{event.region}/{event.distance}/{when}/entry"
    return f"/populaires/{event.short_name}/entry"


# --- Riders' sign-up ----------------------------------------------------------------------------


@FUZZ
@given(form({**RIDER, "bike_type": ["single", "tandem", "fixie", ""], "info_answer": NAMES}))
def test_brevet_sign_up_with_a_question(site, example):
    post(site, site.app, event_path(site, "asking"), example)


@FUZZ
@given(form({**RIDER, "bike_type": ["single", "recumbent", "Single"]}))
def test_brevet_sign_up(site, example):
    post(site, site.app, event_path(site, "plain"), example)


@FUZZ
@given(form({**RIDER, "distance": ["50 km", "100 km", "100", ""]}))
def test_populaire_sign_up_with_a_choice_of_distance(site, example):
    post(site, site.app, event_path(site, "choice"), example)


@FUZZ
@given(form({**RIDER, "distance": ["25 km", "50 km"]}))
def test_populaire_sign_up(site, example):
    post(site, site.app, event_path(site, "single"), example)


# --- Logging in and out -------------------------------------------------------------------------


@FUZZ
@given(
    form(
        {
            "email": [WRANGLER_EMAIL, "nobody@example.com"],
            "password": ["wrong password"],
            "next": ["/admin/", "//evil.example", "/admin/\x00"],
        }
    )
)
def test_login(site, example):
    browser = webtest.TestApp(site.app.app, extra_environ={"HTTP_HOST": "randopony.localhost"})
    answer = post(site, browser, "/admin/login", example, skip=COUNTED_WHEN_REFUSED)
    assert answer.status_int != 302, "a fuzzed password logged in"


@FUZZ
@given(form({}))
def test_logout_with_a_wrong_token_keeps_the_session(site, admin, example):
    example.token = example.token if example.token is not None else "not the token"
    post(site, admin, "/admin/logout", example)
    admin.get("/admin/", status=200)


# --- Wranglers ----------------------------------------------------------------------------------

WRANGLER = {
    "email": EMAILS + ["other@example.com", WRANGLER_EMAIL],
    "password": ["a long password", "short"],
}


@FUZZ
@given(form(WRANGLER))
def test_wrangler_new(site, admin, example):
    post(site, admin, "/admin/wranglers/new", example)


@FUZZ
@given(form({**WRANGLER, "email": ["other@example.com", *WRANGLER["email"]]}))
def test_wrangler_edit(site, admin, example):
    post(site, admin, f"/admin/wranglers/{site.ids['other'].id}/edit", example)


@FUZZ
@given(form({"confirm": ["yes"]}))
def test_wrangler_delete(site, admin, example):
    site.db.expunge_all()  # SQLite hands a deleted row's id out again
    doomed = make_wrangler(site.db, email=f"doomed{next(SERIAL)}@example.com")
    site.db.commit()
    post(site, admin, f"/admin/wranglers/{doomed.id}/delete", example)


# --- Events -------------------------------------------------------------------------------------

EVENT = {
    "date": DATES,
    "start_time": TIMES,
    "start_locn": NAMES,
    "start_map_url": URLS,
    "organizer_email": EMAILS,
    "registration_end_date": ["2030-04-30", *DATES],
    "registration_end_time": ["12:00", *TIMES],
}
BREVET = {
    **EVENT,
    "region": ["LM", "VI", "XX", "lm"],
    "distance": ["200", "300", "250", "2e2"],
    "alt_start_time": ["06:00", *TIMES],
    "route_name": NAMES,
    "info_question": ["Your club?", ""],
}
POPULAIRE = {
    **EVENT,
    "event_name": NAMES,
    "short_name": ["Fuzzed", "SprPop", "Solo", "sprpop", "a b", "x" * 21],
    "distance": ["50 km, 100 km", ",", "x" * 21],
    "entry_form_url": URLS,
}


@FUZZ
@given(form(BREVET))
def test_brevet_new(site, admin, example):
    post(site, admin, "/admin/brevets/new", example)


@FUZZ
@given(form({**BREVET, "region": ["PR", *BREVET["region"]]}))
def test_brevet_edit(site, admin, example):
    post(site, admin, f"/admin/brevets/{site.ids['edited brevet'].id}/edit", example)


@FUZZ
@given(form(POPULAIRE))
def test_populaire_new(site, admin, example):
    post(site, admin, "/admin/populaires/new", example)


@FUZZ
@given(form({**POPULAIRE, "short_name": ["EditMe", *POPULAIRE["short_name"]]}))
def test_populaire_edit(site, admin, example):
    post(site, admin, f"/admin/populaires/{site.ids['edited populaire'].id}/edit", example)


@FUZZ
@given(st.sampled_from(["brevets", "populaires"]), form({"confirm": ["yes"]}))
def test_event_delete(site, admin, kind, example):
    site.db.expunge_all()  # SQLite hands a deleted row's id out again
    event = (
        make_brevet(site.db, region="FR", date_time=in_days(20 + next(SERIAL)))
        if kind == "brevets"
        else make_populaire(site.db, short_name=f"Doomed{next(SERIAL)}")
    )
    site.db.commit()
    post(site, admin, f"/admin/{kind}/{event.id}/delete", example)


ACTIONS = ["rider-list", "email-organizer", "email-webmaster", "1-2-3"]


@FUZZ
@given(
    st.sampled_from(["brevets", "populaires"]),
    st.one_of(
        st.sampled_from(ACTIONS),
        st.text(st.characters(codec="ascii", exclude_characters="/?#%"), min_size=1, max_size=20),
    ),
    form({}),
)
def test_setup_actions(site, admin, kind, action, example):
    event = site.ids["asking" if kind == "brevets" else "single"]
    post(site, admin, f"/admin/{kind}/{event.id}/setup/{action}", example)


# --- What the fuzzers found ---------------------------------------------------------------------


def test_a_name_sent_as_a_file_is_refused_not_a_500(testapp, db):
    brevet = make_brevet(db)
    db.commit()
    path = f"/brevets/LM/200/{brevet.date_time.strftime(URL_DATE_FORMAT)}/entry"
    token = CSRF.search(testapp.get(path).text).group(1)
    fields = {
        "csrf_token": token,
        "email": "a@example.com",
        "last_name": "M",
        "bike_type": "single",
    }
    page = testapp.post(path, fields, upload_files=[("first_name", "n.txt", b"Eddy")], status=400)
    assert "Required" in page.text


def test_a_form_in_another_charset_than_utf8_is_refused_not_a_500(testapp):
    token = CSRF.search(testapp.get("/admin/login").text).group(1)
    body = urlencode({"csrf_token": token, "email": "a@example.com", "password": "caf\xe9"})
    answer = testapp.post(
        "/admin/login",
        body.encode("latin-1"),
        content_type="application/x-www-form-urlencoded; charset=latin-1",
        status=415,
    )
    assert "UTF-8 only" in answer.text
