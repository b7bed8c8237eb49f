"""Wranglers add, list, view, edit and delete brevets and populaires."""

from datetime import datetime, time

import pytest
from sqlalchemy import func, select

from app.models import Brevet, BrevetRider, Populaire
from tests.factories import (
    in_days,
    make_brevet,
    make_brevet_rider,
    make_populaire,
    make_populaire_rider,
)

BREVET = {
    "region": "VI",
    "distance": "300",
    "date": "2031-05-17",
    "start_time": "06:00",
    "alt_start_time": "",
    "route_name": "Island Loop",
    "start_locn": "Thrifty Foods, Sidney",
    "start_map_url": "",
    "organizer_email": "Org@Example.com,  helper@example.com",
    "registration_end_date": "",
    "registration_end_time": "",
    "info_question": "",
}
POPULAIRE = {
    "event_name": "Canada Day Populaire",
    "short_name": "CanDay",
    "distance": "50 km,100 km",
    "date": "2031-07-01",
    "start_time": "09:00",
    "start_locn": "Jericho Beach",
    "start_map_url": "https://maps.example.com/jericho",
    "organizer_email": "pop@example.com",
    "registration_end_date": "",
    "registration_end_time": "",
    "entry_form_url": "",
}


def fill(admin, path, values):
    form = admin.get(path).forms[0]
    for name, value in values.items():
        form[name] = value
    return form.submit(status="*")


def count(db, model):
    db.rollback()  # see what the requests committed (see the `fresh` fixture)
    db.expire_all()
    return db.scalar(select(func.count(model.id)))


# Adding


def test_add_a_brevet(admin, db, fresh):
    response = fill(admin, "/admin/brevets/new", BREVET)
    assert response.status_int == 302
    fresh()
    brevet = db.scalar(select(Brevet))
    assert (brevet.region, brevet.distance, brevet.route_name) == ("VI", 300, "Island Loop")
    assert brevet.date_time == datetime(2031, 5, 17, 6, 0)
    assert brevet.alt_date_time is None
    assert brevet.organizer_email == "org@example.com, helper@example.com"
    # Registration closes at noon the day before by default.
    assert brevet.registration_end == datetime(2031, 5, 16, 12, 0)
    assert brevet.start_map_url is None and brevet.info_question is None
    assert response.location == f"http://randopony.localhost/admin/brevets/{brevet.id}/"
    page = response.follow()
    assert "VI300 17-May-2031 added." in page.text
    assert "http://randopony.localhost/brevets/VI/300/17May2031" in page.text


def test_add_a_brevet_with_every_optional_field(admin, db, fresh):
    values = dict(
        BREVET,
        alt_start_time="07:30",
        start_map_url="https://www.openstreetmap.org/?mlat=48.6",
        registration_end_date="2031-05-15",
        registration_end_time="18:00",
        info_question="Will you need a bike box?",
    )
    assert fill(admin, "/admin/brevets/new", values).status_int == 302
    fresh()
    brevet = db.scalar(select(Brevet))
    assert brevet.alt_date_time == datetime(2031, 5, 17, 7, 30)
    assert brevet.start_map_url == "https://www.openstreetmap.org/?mlat=48.6"
    assert brevet.registration_end == datetime(2031, 5, 15, 18, 0)
    assert brevet.info_question == "Will you need a bike box?"


def test_add_a_populaire(admin, db, fresh):
    response = fill(admin, "/admin/populaires/new", POPULAIRE)
    assert response.status_int == 302
    fresh()
    populaire = db.scalar(select(Populaire))
    assert populaire.short_name == "CanDay"
    assert populaire.distances == ["50 km", "100 km"]
    assert populaire.date_time == datetime(2031, 7, 1, 9, 0)
    assert populaire.registration_end == datetime(2031, 6, 30, 12, 0)
    assert populaire.start_map_url == "https://maps.example.com/jericho"
    assert populaire.entry_form_url is None
    assert "http://randopony.localhost/populaires/CanDay" in response.follow().text


# Refusing bad input


def brevet_error(admin, db, **changes):
    """Submit the brevet form with changes; nothing may be stored. Returns the page."""
    before = count(db, Brevet)
    page = fill(admin, "/admin/brevets/new", dict(BREVET, **changes))
    assert page.status_int == 400
    assert "Please correct the" in page.text
    assert count(db, Brevet) == before
    return page


def field_error(page, name):
    return page.html.find(id=f"{name}-error").text


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("route_name", "", "Required"),
        ("start_locn", "  ", "Required"),
        ("date", "", "Required"),
        ("date", "17/05/2031", "Give a date as YYYY-MM-DD"),
        ("date", "2031-02-30", "Give a date as YYYY-MM-DD"),
        ("date", "0031-05-17", "Give a date between 2000 and 2099"),
        ("start_time", "6am", "Give a time as HH:MM (24 hour clock)"),
        ("start_time", "25:00", "Give a time as HH:MM (24 hour clock)"),
        ("alt_start_time", "7", "Give a time as HH:MM (24 hour clock)"),
        ("organizer_email", "", "Required"),
        ("organizer_email", "org@example.com, not-an-email", "'not-an-email' is not a valid"),
        ("start_map_url", "javascript:alert(1)", "starting with http:// or https://"),
        ("start_map_url", "ftp://example.com/map", "starting with http:// or https://"),
        ("start_map_url", "www.example.com", "starting with http:// or https://"),
        ("route_name", "x" * 101, "At most 100 characters"),
        ("start_locn", "x" * 201, "At most 200 characters"),
        ("info_question", "?" * 501, "At most 500 characters"),
    ],
)
def test_bad_brevet_fields_are_refused(admin, db, field, value, message):
    page = brevet_error(admin, db, **{field: value})
    assert message in field_error(page, field)
    # The wrangler's other input is kept.
    assert page.forms[0]["route_name"].value == (value if field == "route_name" else "Island Loop")


@pytest.mark.parametrize(
    "given, missing",
    [
        ({"registration_end_date": "2031-05-15"}, "registration_end_time"),
        ({"registration_end_time": "12:00"}, "registration_end_date"),
    ],
)
def test_registration_end_needs_both_date_and_time(admin, db, given, missing):
    page = brevet_error(admin, db, **given)
    assert "Give both the date and the time" in field_error(page, missing)


def test_registration_cannot_close_after_the_start(admin, db):
    page = brevet_error(
        admin, db, registration_end_date="2031-05-17", registration_end_time="06:01"
    )
    assert "Registration must close no later than the start" in field_error(
        page, "registration_end_date"
    )


@pytest.mark.parametrize("field, value", [("region", "XX"), ("distance", "250"), ("distance", "")])
def test_brevet_choices_must_come_from_the_lists(admin, db, csrf_token, field, value):
    before = count(db, Brevet)
    values = dict(BREVET, **{field: value}, csrf_token=csrf_token("/admin/brevets/new"))
    page = admin.post("/admin/brevets/new", values, status=400)
    assert "from the list" in field_error(page, field)
    assert count(db, Brevet) == before


def test_a_second_brevet_with_the_same_region_distance_and_date_is_refused(admin, db):
    make_brevet(db, region="VI", distance=300, date_time=datetime(2031, 5, 17, 7, 0))
    db.commit()
    # A different start time on the same day would still share the page's address.
    page = brevet_error(admin, db)
    assert "There is already a VI300 brevet on 17 May 2031" in field_error(page, "date")


def test_the_same_route_on_another_day_or_distance_is_fine(admin, db):
    make_brevet(db, region="VI", distance=300, date_time=datetime(2031, 5, 17, 6, 0))
    db.commit()
    assert fill(admin, "/admin/brevets/new", dict(BREVET, date="2031-05-18")).status_int == 302
    assert fill(admin, "/admin/brevets/new", dict(BREVET, distance="400")).status_int == 302
    assert count(db, Brevet) == 3


def test_html_in_a_field_is_shown_as_text(admin, db, fresh):
    payload = '<script>alert("pony")</script>'
    response = fill(admin, "/admin/brevets/new", dict(BREVET, route_name=payload))
    assert response.status_int == 302
    fresh()
    assert db.scalar(select(Brevet.route_name)) == payload
    page = response.follow()
    assert payload not in page.text
    assert "&lt;script&gt;alert(&#34;pony&#34;)&lt;/script&gt;" in page.text
    # An over-long payload comes back escaped in the form too.
    page = brevet_error(admin, db, route_name=payload * 5)
    assert payload not in page.text
    assert "&lt;script&gt;" in page.text


def populaire_error(admin, db, **changes):
    before = count(db, Populaire)
    page = fill(admin, "/admin/populaires/new", dict(POPULAIRE, **changes))
    assert page.status_int == 400
    assert count(db, Populaire) == before
    return page


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("event_name", "", "Required"),
        ("short_name", "Can Day", "Letters, digits, - and _ only"),
        ("short_name", "../admin", "Letters, digits, - and _ only"),
        ("short_name", "x" * 21, "At most 20 characters"),
        ("distance", " , ", "At least one distance"),
        ("distance", "a really very long distance name", "Each distance at most 20"),
        ("entry_form_url", "mailto:pop@example.com", "starting with http:// or https://"),
        ("organizer_email", "pop@", "is not a valid email address"),
        ("date", "July 1", "Give a date as YYYY-MM-DD"),
    ],
)
def test_bad_populaire_fields_are_refused(admin, db, field, value, message):
    page = populaire_error(admin, db, **{field: value})
    assert message in field_error(page, field)


def test_a_second_populaire_with_the_same_short_name_is_refused(admin, db):
    make_populaire(db, short_name="CanDay")
    db.commit()
    page = populaire_error(admin, db)
    assert "Another populaire is called 'CanDay' already" in field_error(page, "short_name")
    # Addresses that differ only in case are too confusing to allow.
    page = populaire_error(admin, db, short_name="canday")
    assert "already" in field_error(page, "short_name")


# Listing and viewing


def test_lists_show_events_newest_first_with_rider_counts(admin, db):
    old = make_brevet(db, date_time=in_days(-30), route_name="Old")
    new = make_brevet(db, date_time=in_days(30), distance=300)
    make_brevet_rider(db, old)
    make_brevet_rider(db, old, email="two@example.com")
    pop = make_populaire(db)
    make_populaire_rider(db, pop)
    db.commit()
    page = admin.get("/admin/brevets/")
    rows = page.html.find("tbody").find_all("tr")
    assert [r.th.text for r in rows] == [new.title, old.title]
    assert rows[0].find_all("td")[1].text == "0"
    assert rows[1].find_all("td")[1].text == "2"
    assert f"/admin/brevets/{old.id}/edit" in page.text
    assert f"/admin/brevets/{old.id}/delete" in page.text
    pops = admin.get("/admin/populaires/").html.find("tbody").find_all("tr")
    assert [(r.th.text, r.find_all("td")[1].text) for r in pops] == [(pop.title, "1")]


def test_empty_lists_say_so(admin):
    assert "None yet." in admin.get("/admin/populaires/").text


def test_event_page_shows_details_addresses_riders_and_setup_buttons(admin, db):
    brevet = make_brevet(db, info_question="Bike box?")
    make_brevet_rider(db, brevet, comment="<b>bold</b>")
    db.commit()
    page = admin.get(f"/admin/brevets/{brevet.id}/")
    assert brevet.title in page.text
    assert "Seaside Slog" in page.text and "Bike box?" in page.text
    assert f"/rider_emails/{brevet.uuid}" in page.text
    assert f"/rider_list/{brevet.uuid}.xlsx" in page.text
    assert "Eddy Merckx" in page.text and "rider@example.com" in page.text
    assert "&lt;b&gt;bold&lt;/b&gt;" in page.text
    actions = [f.action for f in page.forms.values()]
    assert actions == [
        f"http://randopony.localhost/admin/brevets/{brevet.id}/setup/{a}"
        for a in ("rider-list", "email-organizer", "email-webmaster", "1-2-3")
    ]
    assert all(f.method.upper() == "POST" for f in page.forms.values())


def test_unknown_event_ids_are_404(admin):
    admin.get("/admin/brevets/999/", status=404)
    admin.get("/admin/populaires/999/edit", status=404)
    admin.get("/admin/brevets/999/delete", status=404)


# Editing


def test_edit_a_brevet_shows_its_values_and_saves_changes(admin, db, fresh):
    brevet = make_brevet(db, date_time=datetime(2031, 6, 1, 7, 0))
    uuid = brevet.uuid
    db.commit()
    form = admin.get(f"/admin/brevets/{brevet.id}/edit").forms[0]
    assert form["route_name"].value == "Seaside Slog"
    assert form["date"].value == "2031-06-01"
    assert form["start_time"].value == "07:00"
    assert form["region"].value == "LM" and form["distance"].value == "200"
    # The default registration end shows empty, so it follows the start when that moves.
    assert form["registration_end_date"].value == ""
    form["route_name"] = "Seaside Slog II"
    form["start_time"] = "08:00"
    response = form.submit()
    assert response.status_int == 302
    fresh()
    brevet = db.get(Brevet, brevet.id)
    assert brevet.route_name == "Seaside Slog II"
    assert brevet.date_time == datetime(2031, 6, 1, 8, 0)
    # The organizer's secret links keep working.
    assert brevet.uuid == uuid
    assert "saved." in response.follow().text


def test_editing_a_brevet_onto_another_ones_date_is_refused(admin, db, fresh):
    make_brevet(db, date_time=datetime(2031, 6, 1, 7, 0))
    other = make_brevet(db, date_time=datetime(2031, 6, 8, 7, 0))
    db.commit()
    form = admin.get(f"/admin/brevets/{other.id}/edit").forms[0]
    form["date"] = "2031-06-01"
    page = form.submit(status=400)
    assert "There is already a LM200 brevet" in field_error(page, "date")
    fresh()
    assert db.get(Brevet, other.id).date_time == datetime(2031, 6, 8, 7, 0)


def test_edit_a_populaire_keeping_its_short_name(admin, db, fresh):
    populaire = make_populaire(db, short_name="SprPop")
    db.commit()
    form = admin.get(f"/admin/populaires/{populaire.id}/edit").forms[0]
    assert form["short_name"].value == "SprPop"
    form["event_name"] = "Spring Populaire 2031"
    form["organizer_email"] = "bad address"
    page = form.submit(status=400)
    assert "not a valid email address" in field_error(page, "organizer_email")
    fresh()
    assert db.get(Populaire, populaire.id).event_name == "Spring Populaire"
    form = page.forms[0]
    form["organizer_email"] = "new@example.com"
    assert form.submit().status_int == 302
    fresh()
    populaire = db.get(Populaire, populaire.id)
    assert (populaire.event_name, populaire.organizer_email) == (
        "Spring Populaire 2031",
        "new@example.com",
    )


# Deleting


def test_delete_asks_first_then_deletes_the_event_and_its_riders(admin, db):
    brevet = make_brevet(db)
    make_brevet_rider(db, brevet)
    db.commit()
    title = brevet.title  # read before the row is gone
    page = admin.get(f"/admin/brevets/{brevet.id}/delete")
    assert "Are you sure?" in page.text and "1 pre-registered riders" in page.text
    # Looking at the question deletes nothing.
    assert count(db, Brevet) == 1
    response = page.forms["confirm-delete"].submit()
    assert response.location == "http://randopony.localhost/admin/brevets/"
    assert f"{title} deleted" in response.follow().text
    assert count(db, Brevet) == 0
    assert count(db, BrevetRider) == 0


def test_delete_a_populaire(admin, db):
    populaire = make_populaire(db)
    db.commit()
    admin.get(f"/admin/populaires/{populaire.id}/delete").forms["confirm-delete"].submit()
    assert count(db, Populaire) == 0


def test_delete_without_csrf_token_deletes_nothing(admin, db):
    brevet = make_brevet(db)
    populaire = make_populaire(db)
    db.commit()
    admin.post(f"/admin/brevets/{brevet.id}/delete", status=400)
    admin.post(f"/admin/populaires/{populaire.id}/delete", {"csrf_token": "forged"}, status=400)
    assert count(db, Brevet) == 1
    assert count(db, Populaire) == 1


def test_add_without_csrf_token_stores_nothing(admin, db):
    admin.post("/admin/brevets/new", BREVET, status=400)
    admin.post("/admin/populaires/new", POPULAIRE, status=400)
    assert count(db, Brevet) == 0
    assert count(db, Populaire) == 0


def test_times_are_kept_as_entered(admin, db, fresh):
    fill(admin, "/admin/brevets/new", dict(BREVET, start_time="23:59"))
    fresh()
    assert db.scalar(select(Brevet.date_time)).time() == time(23, 59)
