"""The admin pages' gate: logging in and out, and 403 for everyone else."""

import pytest
import webtest
from pyramid.session import JSONSerializer
from sqlalchemy import select
from webob.cookies import SignedSerializer

from app import main
from app.models import Wrangler
from tests.conftest import WRANGLER_EMAIL, WRANGLER_PASSWORD
from tests.factories import make_brevet, make_populaire, make_wrangler


def admin_paths(brevet_id, populaire_id, wrangler_id):
    paths = ["/admin/", "/admin/logout"]
    for kind, id_ in (
        ("brevets", brevet_id),
        ("populaires", populaire_id),
        ("wranglers", wrangler_id),
    ):
        paths += [
            f"/admin/{kind}/",
            f"/admin/{kind}/new",
            f"/admin/{kind}/{id_}/edit",
            f"/admin/{kind}/{id_}/delete",
        ]
    for kind, id_ in (("brevets", brevet_id), ("populaires", populaire_id)):
        paths.append(f"/admin/{kind}/{id_}/")
        for action in ("rider-list", "email-organizer", "email-webmaster", "1-2-3"):
            paths.append(f"/admin/{kind}/{id_}/setup/{action}")
    return paths


@pytest.fixture
def rows(db):
    brevet = make_brevet(db)
    populaire = make_populaire(db)
    wrangler = make_wrangler(db)
    db.commit()
    return brevet, populaire, wrangler


def test_every_admin_page_answers_403_without_login(testapp, db, rows):
    brevet, populaire, wrangler = rows
    token = testapp.get("/admin/login").forms["login"]["csrf_token"].value
    paths = admin_paths(brevet.id, populaire.id, wrangler.id)
    assert len(paths) == 24
    for path in paths:
        got = testapp.get(path, status="*")
        assert got.status_int == 403, path
        assert "log in" in got.text
        # With a valid token too, so it is the login that is missing, not the token.
        posted = testapp.post(path, {"csrf_token": token}, status="*")
        assert posted.status_int == 403, path
    db.expire_all()
    assert db.get(Wrangler, wrangler.id) is not None
    assert db.scalar(select(Wrangler).where(Wrangler.email == wrangler.email))


def test_every_admin_page_opens_for_a_wrangler(admin, rows):
    brevet, populaire, wrangler = rows
    for path in admin_paths(brevet.id, populaire.id, wrangler.id):
        if "/setup/" in path:
            # Setup actions send email: GET is refused, only the buttons' POSTs run them.
            assert admin.get(path, status=405).status_int == 405
        else:
            assert admin.get(path).status_int == 200, path


def test_the_403_page_links_to_the_login_with_the_way_back(testapp):
    page = testapp.get("/admin/brevets/", status=403)
    assert "/admin/login?next=%2Fadmin%2Fbrevets%2F" in page.text


def test_login_with_good_credentials_goes_to_admin_home(testapp, login):
    response = login()
    assert response.status_int == 302
    assert response.location == "http://randopony.localhost/admin/"
    home = response.follow()
    assert f"Logged in as {WRANGLER_EMAIL}" in home.text
    assert 'href="http://randopony.localhost/admin/brevets/"' in home.text
    assert 'href="http://randopony.localhost/admin/populaires/"' in home.text
    assert 'href="http://randopony.localhost/admin/wranglers/"' in home.text


def test_login_email_is_not_case_sensitive(testapp, login):
    assert login(email="  " + WRANGLER_EMAIL.upper()).status_int == 302
    assert testapp.get("/admin/").status_int == 200


@pytest.mark.parametrize(
    "email, password",
    [
        (WRANGLER_EMAIL, "wrong password"),
        ("nobody@example.com", WRANGLER_PASSWORD),
        ("nobody@example.com", "wrong password"),
    ],
)
def test_login_with_bad_credentials_says_only_wrong_email_or_password(
    testapp, login, email, password
):
    page = login(email=email, password=password)
    assert page.status_int == 200
    assert "Wrong email or password." in page.text
    # Nothing says which of the two was wrong, and the password is not sent back.
    assert "no such" not in page.text.lower()
    assert "not found" not in page.text.lower()
    assert password not in page.text
    assert page.forms["login"]["email"].value == email
    testapp.get("/admin/", status=403)


def test_login_with_empty_fields_asks_for_them(testapp, login):
    page = login(email="", password="")
    assert page.status_int == 200
    assert page.text.count("Required") == 2
    testapp.get("/admin/", status=403)


def test_login_goes_back_to_the_admin_page_that_asked(testapp):
    form = testapp.get("/admin/login?next=/admin/populaires/").forms["login"]
    form["email"] = WRANGLER_EMAIL
    form["password"] = WRANGLER_PASSWORD
    response = form.submit()
    assert response.location == "http://randopony.localhost/admin/populaires/"


@pytest.mark.parametrize(
    "next_path",
    [
        "https://evil.example.com/admin/",
        "//evil.example.com/admin/",
        "/\\evil.example.com/admin",
        "/brevets/",
        "/administrator-phish",
        "javascript:alert(1)",
    ],
)
def test_login_refuses_to_redirect_off_the_admin_pages(testapp, next_path):
    form = testapp.get("/admin/login", {"next": next_path}).forms["login"]
    form["email"] = WRANGLER_EMAIL
    form["password"] = WRANGLER_PASSWORD
    response = form.submit()
    assert response.location == "http://randopony.localhost/admin/"


def test_a_crafted_next_in_the_post_is_refused_too(testapp, csrf_token):
    token = csrf_token("/admin/login")
    response = testapp.post(
        "/admin/login",
        {
            "csrf_token": token,
            "email": WRANGLER_EMAIL,
            "password": WRANGLER_PASSWORD,
            "next": "//evil.example.com/",
        },
    )
    assert response.location == "http://randopony.localhost/admin/"


def test_login_without_csrf_token_is_refused(testapp):
    testapp.get("/admin/login")
    response = testapp.post(
        "/admin/login", {"email": WRANGLER_EMAIL, "password": WRANGLER_PASSWORD}, status=400
    )
    assert "expired" in response.text
    testapp.get("/admin/", status=403)


def test_login_gives_a_new_session(testapp, login):
    testapp.get("/admin/login")
    before = testapp.cookies["randopony_session"]
    login()
    assert testapp.cookies["randopony_session"] != before


def test_logout_is_a_post_that_ends_the_session(admin):
    page = admin.get("/admin/logout")
    assert "Log out" in page.text
    # Visiting the page does not log out.
    admin.get("/admin/", status=200)
    response = page.forms[0].submit()
    assert response.status_int == 302
    assert response.location == "http://randopony.localhost/"
    assert "You are logged out." in response.follow().text
    admin.get("/admin/", status=403)


def test_logout_without_csrf_token_is_refused(admin):
    admin.post("/admin/logout", status=400)
    admin.get("/admin/", status=200)


def test_a_deleted_wrangler_is_logged_out(admin, db):
    db.query(Wrangler).filter_by(email=WRANGLER_EMAIL).delete()
    db.commit()
    admin.get("/admin/", status=403)


def another_browser(wsgi_app, email=WRANGLER_EMAIL, password=WRANGLER_PASSWORD):
    browser = webtest.TestApp(wsgi_app, extra_environ={"HTTP_HOST": "randopony.localhost"})
    form = browser.get("/admin/login").forms["login"]
    form["email"], form["password"] = email, password
    assert form.submit().status_int == 302
    return browser


def test_logout_ends_every_session_of_the_wrangler(admin, wsgi_app):
    laptop = another_browser(wsgi_app)
    laptop.get("/admin/", status=200)
    admin.get("/admin/logout").forms[0].submit(status=302)
    laptop.get("/admin/", status=403)


def test_logging_in_again_after_logout_works(admin, wsgi_app, login):
    admin.get("/admin/logout").forms[0].submit(status=302)
    assert login().status_int == 302
    admin.get("/admin/", status=200)


SESSION_COOKIE = "randopony_session"


def session_cookie(app_settings):
    secret = app_settings["session_secret"]
    return SignedSerializer(secret, "pyramid.session.", "sha512", serializer=JSONSerializer())


def move_login_back(browser, app_settings, seconds):
    """Edit the signed session as if the login had happened `seconds` earlier."""
    cookie = session_cookie(app_settings)
    accessed, created, state = cookie.loads(browser.cookies[SESSION_COOKIE].encode())
    state["logged_in_at"] -= seconds
    browser.set_cookie(SESSION_COOKIE, cookie.dumps((accessed, created, state)).decode())


def test_a_session_ends_twelve_hours_after_login_whatever_the_activity(admin, app_settings):
    move_login_back(admin, app_settings, 12 * 3600 - 60)
    admin.get("/admin/", status=200)  # active all along, and still within the 12 hours
    move_login_back(admin, app_settings, 120)
    page = admin.get("/admin/", status=403)
    assert "log in" in page.text


@pytest.mark.own_database  # an app of its own, to set its session lifetime
def test_the_session_lifetime_is_a_setting(app_settings):
    app = main({}, **{**app_settings, "session.max_lifetime": "600"})
    browser = another_browser(app)
    # A minute's margin either side: how long the test itself takes never decides it.
    move_login_back(browser, app_settings, 540)
    browser.get("/admin/", status=200)
    move_login_back(browser, app_settings, 120)
    browser.get("/admin/", status=403)


def test_a_session_without_a_login_time_is_not_a_login(admin, app_settings):
    cookie = session_cookie(app_settings)
    accessed, created, state = cookie.loads(admin.cookies[SESSION_COOKIE].encode())
    del state["logged_in_at"]
    admin.set_cookie(SESSION_COOKIE, cookie.dumps((accessed, created, state)).decode())
    admin.get("/admin/", status=403)
