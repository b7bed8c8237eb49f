"""Public pages are cached for visitors without a session, and never shown stale."""

import pytest
import webtest
from sqlalchemy import select

from app import main
from app.models import Brevet
from tests.factories import make_brevet, make_brevet_rider

# Real commits: the cache's token is read by a sqlite3 connection of its own (and by other
# processes' apps), which sees only what is committed.
pytestmark = pytest.mark.own_database


def test_a_sign_up_in_another_process_shows_at_once(app_settings, db):
    brevet = make_brevet(db)
    db.commit()
    url = f"/brevets/LM/200/{brevet.url_date}"
    reader = webtest.TestApp(main({}, **app_settings))  # e.g. the old release during a promotion
    writer = webtest.TestApp(main({}, **app_settings))
    assert "Nobody yet" in reader.get(url).text
    assert "Nobody yet" in reader.get(url).text  # now from the cache

    form = writer.get(url + "/entry").forms[0]
    form["email"], form["first_name"], form["last_name"] = "a@example.org", "Ada", "Lovelace"
    form["bike_type"] = "single"
    form.submit()

    reader.reset()
    assert "Ada Lovelace" in reader.get(url).text


def test_a_change_made_directly_in_the_database_session_shows_at_once(testapp, db):
    brevet = make_brevet(db, route_name="Old Name")
    db.commit()
    url = f"/brevets/LM/200/{brevet.url_date}"
    assert "Old Name" in testapp.get(url).text
    db.scalar(select(Brevet)).route_name = "New Name"
    db.commit()
    assert "New Name" in testapp.get(url).text
    make_brevet_rider(db, brevet, first_name="Late", last_name="Rider")
    db.commit()
    assert "Late Rider" in testapp.get(url).text


def test_visitors_with_a_session_get_their_own_page(testapp, db):
    brevet = make_brevet(db)
    db.commit()
    url = f"/brevets/LM/200/{brevet.url_date}"
    testapp.get(url)  # cached for anonymous visitors
    form = testapp.get(url + "/entry").forms[0]  # starts a session (CSRF token)
    form["email"], form["first_name"], form["last_name"] = "a@example.org", "Ada", "Lovelace"
    form["bike_type"] = "single"
    page = form.submit().follow()
    assert "Thank you, Ada" in page.text  # the flash message is not lost to a cached page
    assert testapp.get(url).text.count("Thank you") == 0  # and shown only once


def test_no_session_cookie_is_cached_or_shared(testapp, db):
    brevet = make_brevet(db)
    db.commit()
    url = f"/brevets/LM/200/{brevet.url_date}"
    first = testapp.get(url)
    second = webtest.TestApp(testapp.app).get(url)
    assert "Set-Cookie" not in first.headers and "Set-Cookie" not in second.headers


def test_head_requests_do_not_poison_the_cache(testapp, db):
    brevet = make_brevet(db, route_name="Full Body")
    db.commit()
    url = f"/brevets/LM/200/{brevet.url_date}"
    testapp.head(url)
    assert "Full Body" in testapp.get(url).text


def test_two_new_visitors_each_get_a_form_they_can_send(testapp, db):
    """The entry form carries the visitor's own CSRF token: it is never cached and shown to
    the next visitor (whose sign-up would then be refused as an expired form)."""
    brevet = make_brevet(db)
    db.commit()
    entry = f"/brevets/LM/200/{brevet.url_date}/entry"
    forms = {}
    for email in ("first@example.org", "second@example.org"):  # both open the form first
        forms[email] = webtest.TestApp(testapp.app).get(entry).forms[0]
    for email, form in forms.items():
        form["email"], form["first_name"], form["last_name"] = email, "Ada", "Lovelace"
        form["bike_type"] = "single"
        assert form.submit(expect_errors=True).status_int == 302, email
