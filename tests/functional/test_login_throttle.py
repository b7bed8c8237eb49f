"""Login backoff: per client address and per account, counted before the password is checked,
kept in the database (so both app processes and a restart see it), capped, cleared by a success.

No test waits for a backoff to pass: a block is ended by moving its row's time back."""

import re
import threading
from datetime import timedelta

import pytest
import requests
import waitress
import webtest
from sqlalchemy import select

from app import login_throttle, main
from app.models import LoginFailure, Wrangler
from tests.conftest import WRANGLER_EMAIL, WRANGLER_PASSWORD

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
WRONG = "Wrong email or password."
FREE = 5  # the default free failures

# Real commits: the throttle counts each try in a short transaction of its own, which must hold
# for a second app on the same database and against parallel guesses queueing on SQLite's write
# lock; and the blocks of 10 minutes are app settings.
pytestmark = pytest.mark.own_database


@pytest.fixture
def app_settings(app_settings):
    """Blocks of 10 minutes (1 s by default): however slow the machine, no test finds a block
    lapsed before its next try."""
    return {**app_settings, "login.first_wait": "600"}


@pytest.fixture
def verifies(monkeypatch):
    """How many argon2 verifies the app ran."""
    calls = []
    original = Wrangler.verify_password

    def counting(self, password):
        calls.append(self.email)
        return original(self, password)

    monkeypatch.setattr(Wrangler, "verify_password", counting)
    return calls


def browser(wsgi_app, address="192.0.2.1"):
    return webtest.TestApp(
        wsgi_app, extra_environ={"HTTP_HOST": "randopony.localhost", "REMOTE_ADDR": address}
    )


def try_login(app, email=WRANGLER_EMAIL, password="wrong password"):
    token = CSRF.search(app.get("/admin/login").text).group(1)
    return app.post(
        "/admin/login", {"csrf_token": token, "email": email, "password": password}, status="*"
    )


def rows(fresh):
    return {row.key: row for row in fresh().scalars(select(LoginFailure))}


def end_blocks(db):
    """As if every wait had passed."""
    for row in db.scalars(select(LoginFailure)):
        if row.blocked_until is not None:
            row.blocked_until = row.last_failure = row.last_failure - timedelta(hours=1)
    db.commit()


def test_after_the_free_failures_a_client_waits_and_its_guess_is_not_verified(wsgi_app, verifies):
    app = browser(wsgi_app)
    for _ in range(FREE):
        assert WRONG in try_login(app).text
    assert len(verifies) == FREE
    refused = try_login(app, password=WRANGLER_PASSWORD)
    assert refused.status_int == 429
    # What is left of the first wait, counted down since the fifth failure.
    assert 0 < int(refused.headers["Retry-After"]) <= 600
    assert "Too many failed log ins" in refused.text and "10 minutes" in refused.text
    assert len(verifies) == FREE  # no argon2 for a refused try, even the right password


def test_each_further_failure_doubles_the_wait_up_to_the_cap(app_settings, db, fresh):
    # Waits from 1 s, read from the rows: every block is ended before the next try.
    app = browser(main({}, **{**app_settings, "login.first_wait": "1"}))
    client, _ = login_throttle.keys("192.0.2.1", WRANGLER_EMAIL)
    waits = []
    for _ in range(FREE + 3):
        end_blocks(db)
        assert try_login(app).status_int == 200
        row = rows(fresh)[client]
        if row.blocked_until is not None:
            waits.append((row.blocked_until - row.last_failure).total_seconds())
    assert waits == [1, 2, 4, 8]
    db.execute(LoginFailure.__table__.update().values(failures=500))
    db.commit()
    end_blocks(db)
    try_login(app)
    row = rows(fresh)[client]
    assert row.blocked_until - row.last_failure == timedelta(minutes=15)
    assert 0 < int(try_login(app).headers["Retry-After"]) <= 900


def test_an_account_is_throttled_whatever_the_client(wsgi_app, verifies):
    for i in range(FREE):
        assert WRONG in try_login(browser(wsgi_app, f"198.51.100.{i}")).text
    assert try_login(browser(wsgi_app, "203.0.113.9")).status_int == 429
    assert len(verifies) == FREE
    # Another account from a fresh client is not held up.
    assert WRONG in try_login(browser(wsgi_app, "203.0.113.10"), email="x@example.com").text


def test_a_success_clears_the_account_and_takes_back_its_count_on_the_client(wsgi_app, fresh):
    app = browser(wsgi_app)
    for _ in range(3):
        try_login(app)
    assert try_login(app, password=WRANGLER_PASSWORD).status_int == 302
    client, account = login_throttle.keys("192.0.2.1", WRANGLER_EMAIL)
    left = rows(fresh)
    assert account not in left
    assert (left[client].failures, left[client].blocked_until) == (3, None)


def test_a_blocked_account_logs_in_once_the_wait_is_over(wsgi_app, db):
    app = browser(wsgi_app)
    for _ in range(FREE):
        try_login(app)
    assert try_login(app, password=WRANGLER_PASSWORD).status_int == 429
    end_blocks(db)
    assert try_login(app, password=WRANGLER_PASSWORD).status_int == 302


def test_old_failures_are_forgotten(wsgi_app, db, fresh):
    app = browser(wsgi_app)
    for _ in range(FREE - 1):
        try_login(app)
    for row in db.scalars(select(LoginFailure)):
        row.last_failure -= timedelta(days=2)
    db.commit()
    try_login(app)
    assert {row.failures for row in rows(fresh).values()} == {1}


def test_the_backoff_holds_for_another_process_and_after_a_restart(wsgi_app, app_settings):
    for _ in range(FREE):
        try_login(browser(wsgi_app))
    other_process = main({}, **app_settings)
    assert try_login(browser(other_process)).status_int == 429


def test_a_too_long_password_is_refused_without_verifying_or_counting(wsgi_app, fresh, verifies):
    answer = try_login(browser(wsgi_app), password="x" * 1001)
    assert "At most 1000 characters" in answer.text
    assert verifies == [] and rows(fresh) == {}


def test_parallel_guesses_cannot_all_get_through(app_settings):
    """Each try is counted before its password is checked, under the database's write lock, so
    of N simultaneous guesses exactly the free ones are verified and the rest are refused."""
    guesses = 12
    app = main({}, **{**app_settings, "login.first_wait": "3600", "login.max_wait": "3600"})
    server = waitress.create_server(app, host="127.0.0.1", port=0, threads=guesses)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.effective_port}"
    try:
        sessions = [requests.Session() for _ in range(guesses)]
        tokens = [CSRF.search(s.get(f"{base}/admin/login").text).group(1) for s in sessions]
        start = threading.Barrier(guesses)
        answers = []

        def guess(session, token):
            start.wait()
            form = {"csrf_token": token, "email": WRANGLER_EMAIL, "password": "wrong guess"}
            answer = session.post(f"{base}/admin/login", data=form, allow_redirects=False)
            answers.append((answer.status_code, WRONG in answer.text))

        threads = [
            threading.Thread(target=guess, args=pair) for pair in zip(sessions, tokens, strict=True)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        server.close()
    assert sorted(answers) == [(200, True)] * FREE + [(429, False)] * (guesses - FREE)


def test_a_made_up_forwarded_for_does_not_give_a_fresh_client(wsgi_app, fresh):
    """waitress puts the address the trusted router forwarded in REMOTE_ADDR; a client's own
    X-Forwarded-For must not count as another client."""
    app = browser(wsgi_app)
    for i in range(FREE):
        token = CSRF.search(app.get("/admin/login").text).group(1)
        form = {"csrf_token": token, "email": f"guess{i}@example.com", "password": "wrong"}
        app.post("/admin/login", form, headers={"X-Forwarded-For": f"10.0.0.{i}"})
    client, _ = login_throttle.keys("192.0.2.1", "")
    assert rows(fresh)[client].failures == FREE
    assert try_login(app, email="another@example.com").status_int == 429
