"""Wranglers add, edit and delete wranglers."""

import pytest
import webtest
from pyramid.paster import get_appsettings
from sqlalchemy import func, select

from app.models import Wrangler, wranglers
from tests.conftest import ROOT, WRANGLER_EMAIL, WRANGLER_PASSWORD
from tests.factories import make_wrangler


def wrangler(db, email):
    return db.scalar(select(Wrangler).where(Wrangler.email == email))


def count(fresh):
    return fresh().scalar(select(func.count(Wrangler.id)))


def new_form(admin, email, password):
    form = admin.get("/admin/wranglers/new").forms[0]
    form["email"] = email
    form["password"] = password
    return form.submit(status="*")


def test_list_shows_wranglers_and_marks_you(admin, db):
    make_wrangler(db, email="second@example.com")
    db.commit()
    rows = admin.get("/admin/wranglers/").html.find("tbody").find_all("tr")
    assert [(r.th.text, r.td.text) for r in rows] == [
        (WRANGLER_EMAIL, "you"),
        ("second@example.com", ""),
    ]


def test_add_a_wrangler_who_can_then_log_in(admin, db, fresh, login):
    response = new_form(admin, "  New.Wrangler@Example.com ", "a long password")
    assert response.status_int == 302
    assert "Wrangler new.wrangler@example.com added." in response.follow().text
    new = wrangler(fresh(), "new.wrangler@example.com")
    assert new.password_hash.startswith("$argon2")
    assert "a long password" not in new.password_hash
    admin.reset()
    assert login("new.wrangler@example.com", "a long password").status_int == 302


def test_passwords_are_hashed_at_the_ini_s_argon2_costs_and_production_s_by_default(
    admin, fresh, monkeypatch
):
    assert new_form(admin, "costs@example.com", "a long password").status_int == 302
    # testing.ini's cheap costs reach the app...
    stored = wrangler(fresh(), "costs@example.com").password_hash
    assert stored.startswith("$argon2id$v=19$m=8,t=1,p=1$")
    # ...and the inis of real sites name none: argon2-cffi's defaults (RFC 9106, low memory).
    monkeypatch.setattr(wranglers, "_hasher", wranglers._hasher)  # put back at the end
    for ini in ("production.ini", "staging.ini", "development.ini"):
        wranglers.configure_hasher(get_appsettings(str(ROOT / ini)))
        hasher = wranglers._hasher
        assert (hasher.time_cost, hasher.memory_cost, hasher.parallelism) == (3, 65536, 4), ini


@pytest.mark.parametrize(
    "email, password, field, message",
    [
        ("", "a long password", "email", "Required"),
        ("not an email", "a long password", "email", "not a valid email address"),
        ("x" * 250 + "@example.com", "a long password", "email", "At most 254 characters"),
        (WRANGLER_EMAIL.upper(), "a long password", "email", "is a wrangler already"),
        ("new@example.com", "", "password", "Required"),
        ("new@example.com", "short", "password", "At least 8 characters"),
    ],
)
def test_bad_wrangler_input_is_refused(admin, fresh, email, password, field, message):
    before = count(fresh)
    page = new_form(admin, email, password)
    assert page.status_int == 400
    assert message in page.html.find(id=f"{field}-error").text
    # The password is never sent back in the page.
    assert page.forms[0]["password"].value == ""
    assert count(fresh) == before


def test_edit_email_keeping_the_password(admin, db, fresh, login):
    other = make_wrangler(db, email="other@example.com", password="other password")
    db.commit()
    form = admin.get(f"/admin/wranglers/{other.id}/edit").forms[0]
    assert form["email"].value == "other@example.com"
    assert form["password"].value == ""
    form["email"] = "Renamed@Example.com"
    assert form.submit().status_int == 302
    fresh()
    assert wrangler(db, "renamed@example.com").id == other.id
    admin.reset()
    assert login("renamed@example.com", "other password").status_int == 302


def test_edit_password(admin, db, fresh):
    other = make_wrangler(db, email="other@example.com", password="other password")
    db.commit()
    old_hash = other.password_hash
    form = admin.get(f"/admin/wranglers/{other.id}/edit").forms[0]
    form["password"] = "short"
    page = form.submit(status=400)
    assert "At least 8 characters" in page.text
    assert fresh().get(Wrangler, other.id).password_hash == old_hash
    form = page.forms[0]
    form["password"] = "a brand new password"
    form.submit(status=302)
    assert fresh().get(Wrangler, other.id).check_password("a brand new password")


def test_edit_onto_another_wranglers_email_is_refused(admin, db, fresh):
    other = make_wrangler(db, email="other@example.com")
    db.commit()
    form = admin.get(f"/admin/wranglers/{other.id}/edit").forms[0]
    form["email"] = WRANGLER_EMAIL
    page = form.submit(status=400)
    assert f"{WRANGLER_EMAIL} is a wrangler already" in page.text
    assert fresh().get(Wrangler, other.id).email == "other@example.com"


def test_delete_another_wrangler_after_confirming(admin, db, fresh):
    other = make_wrangler(db, email="other@example.com")
    db.commit()
    page = admin.get(f"/admin/wranglers/{other.id}/delete")
    assert "Are you sure?" in page.text
    assert fresh().get(Wrangler, other.id) is not None
    response = page.forms["confirm-delete"].submit()
    assert "Wrangler other@example.com deleted." in response.follow().text
    assert wrangler(fresh(), "other@example.com") is None


def test_delete_without_csrf_token_deletes_nothing(admin, db, fresh):
    other = make_wrangler(db, email="other@example.com")
    db.commit()
    admin.post(f"/admin/wranglers/{other.id}/delete", status=400)
    assert fresh().get(Wrangler, other.id) is not None


def test_a_wrangler_cannot_delete_themselves(admin, db, fresh, csrf_token):
    me = wrangler(db, WRANGLER_EMAIL)
    page = admin.get(f"/admin/wranglers/{me.id}/delete")
    assert "You cannot delete yourself" in page.text
    assert "confirm-delete" not in page.forms
    # A hand-made POST is refused too.
    response = admin.post(f"/admin/wranglers/{me.id}/delete", {"csrf_token": csrf_token()})
    assert "You cannot delete yourself" in response.follow().text
    assert fresh().get(Wrangler, me.id) is not None
    admin.get("/admin/", status=200)


def logged_in_browser(wsgi_app, email, password):
    browser = webtest.TestApp(wsgi_app, extra_environ={"HTTP_HOST": "randopony.localhost"})
    form = browser.get("/admin/login").forms["login"]
    form["email"], form["password"] = email, password
    assert form.submit().status_int == 302
    return browser


def test_a_password_change_ends_every_session_of_that_wrangler(admin, db, wsgi_app):
    other = make_wrangler(db, email="other@example.com", password="other password")
    db.commit()
    theirs = logged_in_browser(wsgi_app, "other@example.com", "other password")
    theirs.get("/admin/", status=200)
    form = admin.get(f"/admin/wranglers/{other.id}/edit").forms[0]
    form["password"] = "a brand new password"
    form.submit(status=302)
    theirs.get("/admin/", status=403)
    admin.get("/admin/", status=200)


def test_changing_your_own_password_keeps_this_session_only(admin, db, wsgi_app):
    me = wrangler(db, WRANGLER_EMAIL)
    phone = logged_in_browser(wsgi_app, WRANGLER_EMAIL, WRANGLER_PASSWORD)
    form = admin.get(f"/admin/wranglers/{me.id}/edit").forms[0]
    form["password"] = "a brand new password"
    form.submit(status=302)
    admin.get("/admin/", status=200)
    phone.get("/admin/", status=403)


def test_an_email_change_alone_keeps_the_sessions(admin, db, wsgi_app):
    other = make_wrangler(db, email="other@example.com", password="other password")
    db.commit()
    theirs = logged_in_browser(wsgi_app, "other@example.com", "other password")
    form = admin.get(f"/admin/wranglers/{other.id}/edit").forms[0]
    form["email"] = "renamed@example.com"
    form.submit(status=302)
    theirs.get("/admin/", status=200)


def test_a_too_long_new_password_is_refused_clearly(admin, db, fresh):
    other = make_wrangler(db, email="other@example.com", password="other password")
    db.commit()
    old_hash = other.password_hash
    form = admin.get(f"/admin/wranglers/{other.id}/edit").forms[0]
    form["password"] = "x" * 1001
    page = form.submit(status=400)
    assert "At most 1000 characters" in page.html.find(id="password-error").text
    assert fresh().get(Wrangler, other.id).password_hash == old_hash
