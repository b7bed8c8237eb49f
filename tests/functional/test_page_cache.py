"""Public pages are cached, never shown stale, and filled with each visitor's own parts (flash
messages, a wrangler's Admin link, a form's CSRF token) for that visitor only."""

import re

import pytest
import webtest
from sqlalchemy import select

from app import main
from app.models import Brevet
from app.security_headers import HEADERS
from tests.conftest import WRANGLER_EMAIL, WRANGLER_PASSWORD
from tests.factories import make_brevet, make_brevet_rider

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
ADMIN_LINK = '<a href="http://randopony.localhost/admin/">Admin</a>'

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


def browser(wsgi_app) -> webtest.TestApp:
    return webtest.TestApp(wsgi_app, extra_environ={"HTTP_HOST": "randopony.localhost"})


def sign_up(visitor, url, first_name="Ada", last_name="Lovelace", email="a@example.org"):
    form = visitor.get(url + "/entry").forms[0]
    form["email"], form["first_name"], form["last_name"] = email, first_name, last_name
    form["bike_type"] = "single"
    return form.submit()


def logged_in_browser(wsgi_app) -> webtest.TestApp:
    wrangler = browser(wsgi_app)
    form = wrangler.get("/admin/login").forms["login"]
    form["email"], form["password"] = WRANGLER_EMAIL, WRANGLER_PASSWORD
    assert form.submit().status_int == 302
    return wrangler


@pytest.fixture
def brevet_url(db):
    brevet = make_brevet(db)
    db.commit()
    return f"/brevets/LM/200/{brevet.url_date}"


def test_a_sign_up_in_another_process_shows_at_once_to_a_visitor_with_a_session(
    app_settings, brevet_url
):
    reader = browser(main({}, **app_settings))
    reader.get(brevet_url + "/entry")  # a session, with its CSRF token
    assert "randopony_session" in reader.cookies
    assert "Nobody yet" in reader.get(brevet_url).text
    assert "Nobody yet" in reader.get(brevet_url).text  # now from the cache

    sign_up(browser(main({}, **app_settings)), brevet_url)  # e.g. the other waitress process

    assert "Ada Lovelace" in reader.get(brevet_url).text


def test_a_wranglers_edit_shows_at_once_to_them_and_to_everyone(testapp, db, brevet_url):
    wrangler = logged_in_browser(testapp.app)
    visitor = browser(testapp.app)
    visitor.get(brevet_url + "/entry")  # a visitor with a session, not logged in
    for reader in (testapp, visitor, wrangler, testapp):  # the second time from the cache
        assert "Seaside Slog" in reader.get(brevet_url).text
    brevet_id = db.scalar(select(Brevet.id))

    form = wrangler.get(f"/admin/brevets/{brevet_id}/edit").forms[0]
    form["route_name"] = "Mountain Misery"
    assert form.submit().status_int == 302

    for reader in (wrangler, visitor, testapp):
        page = reader.get(brevet_url).text
        assert "Mountain Misery" in page and "Seaside Slog" not in page


def test_the_admin_link_is_for_the_logged_in_wrangler_only(testapp, brevet_url):
    laptop, desktop = logged_in_browser(testapp.app), logged_in_browser(testapp.app)
    visitor = browser(testapp.app)
    visitor.get(brevet_url + "/entry")
    assert ADMIN_LINK not in testapp.get(brevet_url).text  # cached, for everyone
    assert ADMIN_LINK in laptop.get(brevet_url).text
    assert ADMIN_LINK not in visitor.get(brevet_url).text
    assert ADMIN_LINK not in testapp.get(brevet_url).text
    assert ADMIN_LINK in laptop.get(brevet_url + "/entry").text

    # Logging out ends every session of the wrangler: the cached page no longer shows the link.
    desktop.get("/admin/logout").forms[0].submit(status=302)
    assert ADMIN_LINK not in laptop.get(brevet_url).text


def test_a_flash_message_shows_once_and_to_its_visitor_only(testapp, brevet_url):
    other = browser(testapp.app)
    other.get(brevet_url + "/entry")  # a visitor with a session of their own
    other.get(brevet_url)

    page = sign_up(testapp, brevet_url).follow()

    assert page.text.count("Thank you, Ada") == 1
    for reader in (other, browser(testapp.app), testapp):
        page = reader.get(brevet_url).text
        assert "Ada Lovelace" in page and "Thank you" not in page


def test_no_visitor_sees_another_ones_csrf_token(testapp, brevet_url):
    entry = brevet_url + "/entry"
    visitors = [browser(testapp.app) for _ in range(3)]
    visitors[0].get(entry)  # the first two have a session before; the third starts one here
    visitors[1].get(brevet_url)
    visitors[1].get(entry)
    pages = [visitor.get(entry).text for visitor in visitors]
    tokens = [CSRF.search(page).group(1) for page in pages]
    assert len(set(tokens)) == 3
    for token, page in zip(tokens, pages, strict=True):
        assert [t for t in tokens if t in page] == [token]
    # The rest of the form is the same page for all three.
    assert len({page.replace(token, "") for token, page in zip(tokens, pages, strict=True)}) == 1
    # And each visitor's token is the one their session holds: their sign-up goes through.
    for n, visitor in enumerate(visitors):
        form = visitor.get(entry).forms[0]
        form["email"], form["first_name"], form["last_name"] = f"{n}@example.org", "Ada", f"L{n}"
        form["bike_type"] = "single"
        assert form.submit().status_int == 302


def test_html_in_a_name_is_escaped_in_the_flash_and_the_rider_list(testapp, brevet_url):
    marker = "<!--visitor-part:0123456789abcdef0123456789abcdef:flash-->"  # a forged hole
    page = sign_up(testapp, brevet_url, first_name="<b>Ada</b>", last_name=marker[:50])
    text = page.follow().text
    assert "Thank you, &lt;b&gt;Ada&lt;/b&gt;" in text
    assert "<b>Ada" not in text and "<!--visitor-part" not in text
    assert "&lt;b&gt;Ada&lt;/b&gt; &lt;!--visitor-part" in testapp.get(brevet_url).text


def test_pages_from_the_cache_carry_the_security_headers_for_every_visitor(testapp, brevet_url):
    wrangler = logged_in_browser(testapp.app)
    visitor = browser(testapp.app)
    for reader in (testapp, testapp, visitor, visitor, wrangler):
        for path in (brevet_url, brevet_url + "/entry"):
            answer = reader.get(path)
            for name, value in HEADERS.items():
                assert answer.headers.get(name) == value, (path, name)


def test_without_the_page_cache_each_page_draws_its_visitors_parts_itself(app_settings, brevet_url):
    site = main({}, **{**app_settings, "page_cache": "false"})
    wrangler, visitor = logged_in_browser(site), browser(site)
    assert ADMIN_LINK in wrangler.get(brevet_url).text
    assert ADMIN_LINK not in visitor.get(brevet_url).text
    page = sign_up(visitor, brevet_url).follow().text
    assert "Thank you, Ada" in page and "visitor-part" not in page
    assert CSRF.search(visitor.get(brevet_url + "/entry").text)
