"""Pre-registration: the form, its rules, and what a sign-up stores and queues."""

import json
import sqlite3
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import webtest
from sqlalchemy import select

from app import main
from app.models import BrevetRider, Link, OutboundEmail, PopulaireRider
from tests.factories import in_days, make_brevet, make_populaire, now


def entry_form(testapp, url):
    return testapp.get(url + "/entry").forms[0]


def fill(form, **values):
    defaults = {"email": "rider@example.org", "first_name": "Ada", "last_name": "Lovelace"}
    if "info_answer" in form.fields:
        defaults["info_answer"] = "No"
    for name, value in {**defaults, **values}.items():
        form[name] = value
    return form


@pytest.fixture
def brevet_url(db):
    brevet = make_brevet(db, info_question="Drop bag?")
    db.commit()
    return f"/brevets/LM/200/{brevet.url_date}"


def riders(db, model=BrevetRider):
    db.expire_all()
    return db.scalars(select(model)).all()


def outbox(db):
    db.expire_all()
    return db.scalars(select(OutboundEmail).order_by(OutboundEmail.id)).all()


def test_sign_up_stores_rider_and_queues_both_emails(testapp, db, brevet_url):
    form = fill(entry_form(testapp, brevet_url), bike_type="tandem", info_answer="Yes please")
    page = form.submit().follow()
    assert "Thank you, Ada" in page.text
    assert "Ada Lovelace" in page.text  # listed on the event page
    [rider] = riders(db)
    assert (rider.email, rider.bike_type, rider.info_answer) == (
        "rider@example.org",
        "tandem",
        "Yes please",
    )
    assert rider.member_status is None  # the membership service refused: "unknown"
    confirmation, notification = outbox(db)
    assert confirmation.to_addrs == "rider@example.org"
    assert confirmation.reply_to == "organizer@example.com"
    assert brevet_url in confirmation.body
    assert notification.to_addrs == "organizer@example.com"
    assert "Ada Lovelace <rider@example.org> has pre-registered" in notification.body
    assert "/rider_emails/" in notification.body


def test_same_name_and_email_again_is_already_registered(testapp, db, brevet_url):
    fill(entry_form(testapp, brevet_url), bike_type="single").submit()
    again = fill(
        entry_form(testapp, brevet_url),
        email="RIDER@example.org",
        first_name="ada",
        bike_type="single",
    )
    page = again.submit().follow()
    assert "already registered" in page.text
    assert len(riders(db)) == 1
    assert len(outbox(db)) == 2


def test_same_email_different_name_is_a_second_rider(testapp, db, brevet_url):
    fill(entry_form(testapp, brevet_url), bike_type="tandem").submit()
    fill(
        entry_form(testapp, brevet_url),
        first_name="Charles",
        last_name="Babbage",
        bike_type="tandem",
    ).submit()
    assert len(riders(db)) == 2


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("email", "", "Required"),
        ("email", "not-an-email", "not a valid email"),
        ("email", "a" * 250 + "@example.org", "At most 254"),
        ("first_name", "", "Required"),
        ("last_name", "x" * 51, "At most 50"),
        ("comment", "c" * 501, "At most 500"),
        ("first_name", "Line\nbreak", "control characters"),
    ],
)
def test_bad_input_is_refused_with_a_message_and_nothing_stored(
    testapp, db, brevet_url, field, value, message
):
    page = testapp.get(brevet_url + "/entry")
    data = {
        "csrf_token": page.forms[0]["csrf_token"].value,
        "email": "rider@example.org",
        "first_name": "Ada",
        "last_name": "Lovelace",
        "bike_type": "single",
        "info_answer": "No",
        field: value,
    }
    answer = testapp.post(brevet_url + "/entry", data, status=400)
    assert message in answer.text
    assert 'aria-invalid="true"' in answer.text
    assert riders(db) == [] and outbox(db) == []


def test_unknown_bike_type_is_refused(testapp, db, brevet_url):
    form = fill(entry_form(testapp, brevet_url), info_answer="no")
    form["bike_type"].force_value("penny-farthing")
    assert "Choose a bike type" in form.submit(status=400).text
    assert riders(db) == []


def test_question_of_the_event_must_be_answered(testapp, db, brevet_url):
    answer = fill(entry_form(testapp, brevet_url), bike_type="single", info_answer="").submit(
        status=400
    )
    assert "Drop bag?" in answer.text and "Required" in answer.text


def test_unicode_names_are_kept(testapp, db, brevet_url):
    fill(
        entry_form(testapp, brevet_url),
        first_name="Zoë",
        last_name="Ørsted-Nuñez",
        bike_type="recumbent",
        info_answer="n",
    ).submit()
    assert riders(db)[0].full_name == "Zoë Ørsted-Nuñez"
    assert "Zoë Ørsted-Nuñez" in testapp.get(brevet_url).text


def test_script_in_a_name_is_rendered_escaped(testapp, db, brevet_url):
    payload = "<script>alert(1)</script>"
    fill(
        entry_form(testapp, brevet_url), last_name=payload[:50], bike_type="single", info_answer="n"
    ).submit()
    page = testapp.get(brevet_url)
    assert "<script>alert(1)" not in page.text
    assert "&lt;script&gt;alert(1)" in page.text


def test_post_without_csrf_token_is_400_and_stores_nothing(testapp, db, brevet_url):
    # Everything the form asks for but the token, so that the token alone is what is missing.
    fields = {"email": "rider@example.org", "first_name": "A", "last_name": "B"}
    fields.update(bike_type="single", info_answer="No")
    answer = testapp.post(brevet_url + "/entry", fields, status=400)
    assert "This form has expired" in answer.text
    assert riders(db) == []


def test_registration_closed_points_to_the_entry_form(testapp, db):
    brevet = make_brevet(db, date_time=in_days(1), registration_end=now() - timedelta(minutes=1))
    db.commit()
    url = f"/brevets/LM/200/{brevet.url_date}"
    page = testapp.get(url + "/entry")
    assert "is closed" in page.text
    assert "entry form" in page.text
    assert "<form" not in page.text
    testapp.post(url + "/entry", {"csrf_token": "x"}, status=400)  # no token in a session: refused
    assert "Pre-register for this brevet" not in testapp.get(url).text


def test_closed_registration_refuses_a_post_with_a_valid_token(testapp, db):
    brevet = make_brevet(db, registration_end=now() + timedelta(hours=1))
    db.commit()
    url = f"/brevets/LM/200/{brevet.url_date}"
    form = fill(entry_form(testapp, url), bike_type="single")
    brevet.registration_end = now() - timedelta(seconds=1)
    db.commit()
    assert "is closed" in form.submit().text
    assert riders(db) == []


def test_populaire_with_several_distances_asks_which(testapp, db):
    make_populaire(db, distance="50 km, 100 km")
    db.commit()
    form = fill(entry_form(testapp, "/populaires/SprPop"))
    assert "Choose a distance" in form.submit(status=400).text
    form = fill(entry_form(testapp, "/populaires/SprPop"), distance="100 km")
    form.submit().follow()
    [rider] = riders(db, PopulaireRider)
    assert rider.distance == "100 km"


def test_populaire_with_one_distance_needs_no_choice(testapp, db):
    make_populaire(db, short_name="Short", distance="60 km")
    db.commit()
    fill(entry_form(testapp, "/populaires/Short")).submit().follow()
    assert riders(db, PopulaireRider)[0].distance == "60 km"


class MembershipService(BaseHTTPRequestHandler):
    members = {("Ada", "Lovelace")}
    slow = False

    def do_GET(self):
        from urllib.parse import parse_qs, urlparse

        query = parse_qs(urlparse(self.path).query)
        if query["first"][0] == "Slow":
            # No answer until the test is over: the app's timeout always comes first.
            self.server.test_over.wait(60)
        body = json.dumps(
            {"is_current_member": (query["first"][0], query["last"][0]) in self.members}
        )
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args):
        pass


@pytest.fixture
def membership_service(db):
    server = ThreadingHTTPServer(("127.0.0.1", 0), MembershipService)
    server.test_over = threading.Event()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    link = db.scalar(select(Link).where(Link.key == "membership_check_url"))
    link.url = (
        f"http://127.0.0.1:{server.server_port}/check?first={{first_name}}&last={{last_name}}"
    )
    db.commit()
    yield server
    server.test_over.set()
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(
    "first, last, expected",
    [("Ada", "Lovelace", True), ("Not", "Member", False), ("Slow", "Service", None)],
)
def test_membership_is_looked_up_and_never_blocks(
    testapp, db, brevet_url, membership_service, first, last, expected, app_settings
):
    testapp.app.registry.settings["membership.timeout"] = "0.5"
    form = fill(
        entry_form(testapp, brevet_url),
        first_name=first,
        last_name=last,
        bike_type="single",
        info_answer="n",
    )
    assert "Thank you" in form.submit().follow().text
    assert riders(db)[0].member_status is expected


def test_rider_emails_link_gives_addresses_to_the_organizer(testapp, db, brevet_url):
    for first in ("Ada", "Bea"):
        fill(
            entry_form(testapp, brevet_url),
            first_name=first,
            email=f"{first}@example.org",
            bike_type="single",
            info_answer="n",
        ).submit()
    brevet = riders(db)[0].brevet
    answer = testapp.get(f"{brevet_url}/rider_emails/{brevet.uuid}")
    assert answer.content_type == "text/plain"
    assert answer.text == "ada@example.org, bea@example.org"
    testapp.get(f"{brevet_url}/rider_emails/not-the-uuid", status=404)


def test_rider_emails_link_is_gone_once_the_event_has_moved_on(testapp, db):
    brevet = make_brevet(db, date_time=in_days(-9))
    db.commit()
    testapp.get(f"/brevets/LM/200/{brevet.url_date}/rider_emails/{brevet.uuid}", status=404)


def test_populaire_rider_emails(testapp, db):
    populaire = make_populaire(db, distance="60 km")
    db.commit()
    fill(entry_form(testapp, "/populaires/SprPop")).submit()
    assert (
        testapp.get(f"/populaires/SprPop/rider_emails/{populaire.uuid}").text == "rider@example.org"
    )
    testapp.get("/populaires/SprPop/rider_emails/wrong", status=404)


def test_rider_list_downloads(testapp, db, brevet_url):
    fill(entry_form(testapp, brevet_url), bike_type="quad", info_answer="yes").submit()
    brevet = riders(db)[0].brevet
    csv = testapp.get(f"{brevet_url}/rider_list/{brevet.uuid}.csv")
    assert "attachment" in csv.headers["Content-Disposition"]
    assert "Lovelace,Ada,rider@example.org,quad,unknown,yes" in csv.text
    xlsx = testapp.get(f"{brevet_url}/rider_list/{brevet.uuid}.xlsx")
    assert xlsx.body[:2] == b"PK"
    testapp.get(f"{brevet_url}/rider_list/{brevet.uuid}.exe", status=404)
    testapp.get(f"{brevet_url}/rider_list/wrong.csv", status=404)


@pytest.mark.own_database  # another connection takes SQLite's write lock
def test_membership_is_asked_before_the_sign_up_takes_the_write_lock(
    testapp, db, brevet_url, membership_service, app_settings
):
    """While the club's service answers, another writer can write: the sign-up does not hold
    SQLite's write lock across the call."""
    database = app_settings["sqlalchemy.url"].removeprefix("sqlite:///")
    seen = []

    class Answer(MembershipService):
        def do_GET(self):
            other = sqlite3.connect(database, timeout=0.2, isolation_level=None)
            try:
                other.execute("BEGIN IMMEDIATE")
                other.execute("ROLLBACK")
                seen.append("could write")
            except sqlite3.OperationalError as error:
                seen.append(str(error))
            finally:
                other.close()
            super().do_GET()

    membership_service.RequestHandlerClass = Answer
    form = fill(entry_form(testapp, brevet_url), bike_type="single")
    assert "Thank you" in form.submit().follow().text
    assert seen == ["could write"]
    assert riders(db)[0].member_status is True


@pytest.mark.own_database  # another connection holds SQLite's write lock
def test_a_sign_up_that_never_gets_the_write_lock_is_refused_with_503(db, brevet_url, app_settings):
    """Another writer holds the database for every try: the rider is told to send it again
    (503, Retry-After), never a 500, and nothing is stored."""
    wsgi_app = main({}, **{**app_settings, "sqlite.busy_timeout_ms": "50"})
    testapp = webtest.TestApp(wsgi_app, extra_environ={"HTTP_HOST": "randopony.localhost"})
    form = fill(entry_form(testapp, brevet_url), bike_type="single")
    database = app_settings["sqlalchemy.url"].removeprefix("sqlite:///")
    writer = sqlite3.connect(database, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    try:
        answer = form.submit(status=503)
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    assert answer.headers["Retry-After"] == "5"
    assert "Nothing was saved" in answer.text
    assert riders(db) == [] and outbox(db) == []


def test_a_sign_up_sent_again_by_the_router_is_stored_and_mailed_once(testapp, db, brevet_url):
    """The router sends a write again, with the same request id, when the app process that had
    it died: the second try gets the first one's answer, and nothing is done twice."""
    form = fill(entry_form(testapp, brevet_url), bike_type="single")
    first = form.submit(headers={"X-Randopony-Request": "a" * 32}, status=302)
    again = form.submit(headers={"X-Randopony-Request": "a" * 32}, status=302)
    assert again.location == first.location
    assert again.headers["X-Randopony-Replay"] == "ids"
    assert "Set-Cookie" not in again.headers  # the view did not run: no "already registered"
    assert len(riders(db)) == 1 and len(outbox(db)) == 2
    # Another request id is another sign-up attempt (here: already registered).
    other = form.submit(headers={"X-Randopony-Request": "b" * 32}, status=302)
    assert "already registered" in other.follow().text
    assert len(riders(db)) == 1 and len(outbox(db)) == 2


def test_a_refused_write_leaves_no_record_so_its_second_try_is_done(testapp, db, brevet_url):
    form = fill(entry_form(testapp, brevet_url), bike_type="single", email="not an address")
    form.submit(headers={"X-Randopony-Request": "c" * 32}, status=400)
    form["email"] = "rider@example.org"
    form.submit(headers={"X-Randopony-Request": "c" * 32}, status=302)
    assert len(riders(db)) == 1


def test_organizer_secrets_are_compared_in_constant_time(testapp, db, brevet_url, monkeypatch):
    """The rider-email and rider-list links compare their secret with hmac.compare_digest."""
    import hmac

    compared = []
    real = hmac.compare_digest
    monkeypatch.setattr(hmac, "compare_digest", lambda a, b: compared.append(a) or real(a, b))
    fill(entry_form(testapp, brevet_url), bike_type="single").submit()
    brevet = riders(db)[0].brevet
    testapp.get(f"{brevet_url}/rider_emails/{brevet.uuid}")
    testapp.get(f"{brevet_url}/rider_list/not-the-secret.csv", status=404)
    testapp.get(f"{brevet_url}/rider_emails/%C3%A9t%C3%A9", status=404)  # not ASCII: still 404
    assert compared == [brevet.uuid.encode(), b"not-the-secret", "été".encode()]


def test_a_body_larger_than_any_form_is_refused_and_stores_nothing(testapp, db, brevet_url):
    form = fill(entry_form(testapp, brevet_url), bike_type="single", comment="x" * 70_000)
    answer = form.submit(status=413)
    assert "larger than 65536 bytes" in answer.text
    assert riders(db) == []


@pytest.mark.parametrize(
    "first, again", [("Émile", "Émile"), ("Émile", "ÉMILE"), ("Émile", "E\u0301mile")]
)
def test_a_second_sign_up_with_accented_names_is_a_duplicate(testapp, db, brevet_url, first, again):
    """Compared casefolded and in one Unicode form: SQLite's lower() folds ASCII only, and the
    second 'Émile' was a 500."""
    form = fill(entry_form(testapp, brevet_url), first_name=first, last_name="Zola")
    form["bike_type"] = "single"
    form.submit(status=302)
    form = fill(entry_form(testapp, brevet_url), first_name=again, last_name="ZOLA")
    form["bike_type"] = "single"
    page = form.submit(status=302).follow()
    assert "is already registered" in page.text
    assert [r.first_name for r in riders(db)] == ["Émile"]  # stored in one form (NFC)


@pytest.mark.parametrize("field", ["first_name", "last_name", "comment", "info_answer"])
@pytest.mark.parametrize("bad", ["\x0b", "\u2028", "\u2029", "\x00", "\n", "\x7f"])
def test_control_characters_and_line_separators_are_refused(testapp, db, brevet_url, field, bad):
    form = fill(entry_form(testapp, brevet_url), bike_type="single")
    form[field] = f"Ada{bad}x"
    page = form.submit(status=400)
    assert "Please remove line breaks and control characters" in page.text
    assert riders(db) == [] and outbox(db) == []


def test_a_populaire_with_letters_beyond_latin_1_gives_its_rider_list(testapp, db):
    populaire = make_populaire(db, event_name="Cœur de Lion", short_name="Coeur")
    db.commit()
    fill(entry_form(testapp, "/populaires/Coeur"), distance="50 km").submit(status=302)
    answer = testapp.get(f"/populaires/Coeur/rider_list/{populaire.uuid}.csv")
    disposition = answer.headers["Content-Disposition"]
    assert disposition.startswith('attachment; filename="')
    assert "filename*=UTF-8''" in disposition and "C%C5%93ur" in disposition


def test_mailed_links_use_the_sites_address_never_the_requests_host(wsgi_app, db, brevet_url):
    """A sign-up sent with a forged Host: the organizer's secret links in the mail still point
    at the site (site.url), never where the request said."""
    evil = webtest.TestApp(wsgi_app, extra_environ={"HTTP_HOST": "evil.example"})
    form = fill(entry_form(evil, brevet_url), bike_type="single")
    form.submit(status=302)
    confirmation, notification = outbox(db)
    for email in (confirmation, notification):
        assert "evil.example" not in email.body
    assert f"http://randopony.localhost{brevet_url}" in notification.body
    assert "http://randopony.localhost/brevets/" in notification.body


@pytest.mark.own_database  # an app of its own, with an https site.url
def test_a_site_behind_https_sends_secure_cookies_and_https_links(app_settings, db, brevet_url):
    """Behind a TLS front end (site.url https://, and X-Forwarded-Proto from the router that
    waitress trusts), the session cookie is Secure and mailed links are https://."""
    app = main({}, **{**app_settings, "site.url": "https://randopony.example.org"})
    browser = webtest.TestApp(
        app, extra_environ={"HTTP_HOST": "randopony.example.org", "wsgi.url_scheme": "https"}
    )
    form = fill(entry_form(browser, brevet_url), bike_type="single")
    answer = form.submit(status=302)
    cookies = [v for k, v in answer.headerlist if k == "Set-Cookie"]
    assert cookies and all("; secure" in c.lower() for c in cookies), cookies
    assert answer.headers["Location"].startswith("https://randopony.example.org/")
    confirmation, notification = outbox(db)
    assert f"https://randopony.example.org{brevet_url}" in notification.body
    assert "http://randopony" not in notification.body + confirmation.body


def test_a_site_over_plain_http_keeps_cookies_usable(testapp, brevet_url):
    # Secure cookies over http would never come back: the sign-up form would always expire.
    answer = fill(entry_form(testapp, brevet_url), bike_type="single").submit(status=302)
    cookies = [v for k, v in answer.headerlist if k == "Set-Cookie"]
    assert cookies and not any("; secure" in c.lower() for c in cookies), cookies
