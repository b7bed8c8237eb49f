"""A populaire's organizer downloads the rider list; a populaire whose pre-registration is closed,
and one that has moved on, as a rider finds them."""

import csv
import io
from datetime import timedelta

import openpyxl
import pytest
from sqlalchemy import select

from app.models import Link, PopulaireRider
from tests.factories import in_days, make_populaire, make_populaire_rider, now

PAGE = "/populaires/SprPop"
RESULTS = "https://randonneurs.bc.ca/results/"  # the site's results_link, as initialised
ENTRY_FORM = "https://randonneurs.bc.ca/organize/eventform.pdf"


def sign_up(testapp, path=PAGE, **values):
    """A rider pre-registers through the form and is shown the event page, thanked."""
    form = testapp.get(path + "/entry").forms[0]
    fields = {"email": "ada@example.org", "first_name": "Ada", "last_name": "Lovelace", **values}
    for name, value in fields.items():
        form[name] = value
    page = form.submit(status=302).follow()
    assert "Thank you" in page.text
    return page


def stored_riders(db):
    db.expire_all()
    return db.scalars(select(PopulaireRider)).all()


# The rider list


@pytest.fixture
def populaire(db):
    populaire = make_populaire(db, distance="50 km, 100 km")
    db.commit()
    return populaire


def test_the_organizer_downloads_the_rider_list_as_csv(testapp, populaire):
    sign_up(testapp, distance="100 km", comment="First populaire")
    sign_up(
        testapp, email="eddy@example.org", first_name="Eddy", last_name="Merckx", distance="50 km"
    )

    answer = testapp.get(f"{PAGE}/rider_list/{populaire.uuid}.csv")
    assert answer.content_type == "text/csv"
    assert answer.headers["Content-Disposition"].startswith(
        f'attachment; filename="Spring_Populaire_{populaire.date_time:%d-%b-%Y}_riders.csv"'
    )
    assert answer.headers["Cache-Control"] == "no-store"  # riders' addresses: no cache keeps it
    header, *rows = list(csv.reader(io.StringIO(answer.text)))
    assert header == ["Last name", "First name", "Email", "Distance", "Comment", "Registered"]
    assert [row[:5] for row in rows] == [
        ["Lovelace", "Ada", "ada@example.org", "100 km", "First populaire"],
        ["Merckx", "Eddy", "eddy@example.org", "50 km", ""],
    ]


def test_the_organizer_downloads_the_rider_list_as_a_spreadsheet(testapp, populaire):
    sign_up(testapp, distance="50 km")
    answer = testapp.get(f"{PAGE}/rider_list/{populaire.uuid}.xlsx")
    assert answer.content_type == (
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    )
    assert answer.headers["Content-Disposition"].endswith("_riders.xlsx")
    sheet = openpyxl.load_workbook(io.BytesIO(answer.body), read_only=True)["Riders"]
    rows = [row[:4] for row in sheet.iter_rows(values_only=True)]
    assert rows == [
        ("Last name", "First name", "Email", "Distance"),
        ("Lovelace", "Ada", "ada@example.org", "50 km"),
    ]


def test_a_populaire_with_no_riders_yet_has_an_empty_list(testapp, populaire):
    answer = testapp.get(f"{PAGE}/rider_list/{populaire.uuid}.csv")
    assert answer.text.splitlines() == ["Last name,First name,Email,Distance,Comment,Registered"]


@pytest.mark.parametrize(
    "path",
    [
        "{page}/rider_list/not-the-secret.csv",  # a guess
        "{page}/rider_list/{uuid}x.csv",  # nearly the secret
        "{page}/rider_list/{uuid}.pdf",  # a format there is none of
        "{page}/rider_list/{uuid}",  # no format
    ],
)
def test_the_rider_list_needs_its_exact_secret_address(testapp, populaire, path):
    sign_up(testapp, distance="50 km")
    page = testapp.get(path.format(page=PAGE, uuid=populaire.uuid), status=404)
    assert "ada@example.org" not in page.text


def test_another_populaires_secret_does_not_open_this_list(testapp, db, populaire):
    other = make_populaire(db, event_name="Fall Populaire", short_name="FallPop")
    db.commit()
    sign_up(testapp, distance="50 km")
    testapp.get(f"{PAGE}/rider_list/{other.uuid}.csv", status=404)
    own = testapp.get(f"/populaires/FallPop/rider_list/{other.uuid}.csv").text
    assert "ada@example.org" not in own


# Pre-registration closed


@pytest.fixture
def closed(db):
    """Tomorrow's populaire, whose pre-registration ended a minute ago."""
    populaire = make_populaire(
        db,
        date_time=in_days(1),
        registration_end=now() - timedelta(minutes=1),
        organizer_email="pat@example.org, sam@example.org",
    )
    make_populaire_rider(db, populaire, first_name="Susan", last_name="Notorangelo")
    db.commit()
    return populaire


def test_the_closed_page_says_when_and_whom_to_ask(testapp, closed):
    page = testapp.get(f"{PAGE}/entry")
    assert page.status_int == 200
    heading = page.html.find("h1").get_text()
    assert heading == f"Pre-registration for Spring Populaire {closed.date_time:%d-%b-%Y} is closed"
    said = " ".join(page.html.get_text().split())
    assert f"closed {closed.registration_end:%A %d %B %Y at %H:%M}" in said
    mailto = [a["href"] for a in page.html.select('a[href^="mailto:"]')]
    assert "mailto:pat@example.org" in mailto and "mailto:sam@example.org" in mailto
    assert page.html.find("a", string="entry form")["href"] == ENTRY_FORM
    details = page.html.find("a", string="Event details and riders")["href"]
    assert details.endswith(PAGE)
    assert not page.forms  # no sign-up form to fill in


def test_a_populaire_with_its_own_entry_form_points_to_it(testapp, db):
    make_populaire(
        db,
        registration_end=now() - timedelta(minutes=1),
        entry_form_url="https://example.org/sprpop-entry.pdf",
    )
    db.commit()
    page = testapp.get(f"{PAGE}/entry")
    assert (
        page.html.find("a", string="entry form")["href"] == "https://example.org/sprpop-entry.pdf"
    )


def test_the_event_page_of_a_closed_populaire_still_shows_its_riders(testapp, closed):
    page = testapp.get(PAGE)
    assert "Susan Notorangelo" in page.text
    assert "Pre-registration for this populaire is closed." in page.text
    assert "Pre-register for this populaire" not in page.text


def test_a_sign_up_sent_after_the_close_is_refused_and_stores_nothing(testapp, db):
    populaire = make_populaire(db, distance="60 km", registration_end=now() + timedelta(hours=1))
    db.commit()
    form = testapp.get(f"{PAGE}/entry").forms[0]  # opened while it was open
    form["email"], form["first_name"], form["last_name"] = "late@example.org", "Late", "Rider"
    populaire.registration_end = now() - timedelta(seconds=1)
    db.commit()
    answer = form.submit()
    assert "is closed" in answer.text
    assert stored_riders(db) == []


# Moved on


@pytest.fixture
def moved_on(db):
    """A populaire ridden eight days ago: more than a week past, it has moved on."""
    populaire = make_populaire(db, date_time=in_days(-8))
    make_populaire_rider(db, populaire, email="susan@example.org", first_name="Susan")
    db.commit()
    return populaire


@pytest.mark.parametrize("path", [PAGE, f"{PAGE}/entry"])
def test_a_populaire_past_a_week_has_moved_on(testapp, moved_on, path):
    page = testapp.get(path)
    assert page.status_int == 200
    assert page.html.find("h1").get_text() == (
        f"Spring Populaire {moved_on.date_time:%d-%b-%Y} has moved on"
    )
    said = " ".join(page.html.get_text().split())
    assert f"This populaire was ridden on {moved_on.date_time:%d %B %Y}" in said
    assert page.html.find("a", string="results")["href"] == RESULTS
    assert "Susan" not in page.text  # its riders are no longer shown
    assert not page.forms


def test_without_a_results_link_the_moved_on_page_offers_none(testapp, db, moved_on):
    db.delete(db.scalar(select(Link).where(Link.key == "results_link")))
    db.commit()
    page = testapp.get(PAGE)
    assert "has moved on" in page.text
    assert page.html.find("a", string="results") is None


def test_a_moved_on_populaire_takes_no_sign_up(testapp, db, moved_on, csrf_token):
    fields = {"email": "late@example.org", "first_name": "Late", "last_name": "Rider"}
    answer = testapp.post(
        f"{PAGE}/entry", {**fields, "distance": "50 km", "csrf_token": csrf_token("/admin/login")}
    )
    assert "has moved on" in answer.text
    assert [rider.email for rider in stored_riders(db)] == ["susan@example.org"]


def test_a_moved_on_populaire_leaves_the_lists_and_its_rider_emails_link(testapp, moved_on):
    assert "Spring Populaire" not in testapp.get("/populaires/").text
    assert "Spring Populaire" not in testapp.get("/").text
    testapp.get(f"{PAGE}/rider_emails/{moved_on.uuid}", status=404)


def test_a_populaire_a_week_past_has_not_moved_on_yet(testapp, db):
    populaire = make_populaire(db, date_time=in_days(-7))
    make_populaire_rider(db, populaire, first_name="Lon", last_name="Haldeman")
    db.commit()
    page = testapp.get(PAGE)
    assert "has moved on" not in page.text
    assert "Lon Haldeman" in page.text
    assert "is closed" in page.text
    assert "Spring Populaire" in testapp.get("/populaires/").text
