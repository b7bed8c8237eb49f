"""Fixtures: every test gets its own real SQLite database (a copy of one migrated by
initialize_RandoPony_db), its own broker file and a real WSGI app built from testing.ini.

The functional tests (tests/functional/conftest.py) trade these for one app for the whole run and
a transaction per test that is rolled back at its end; tests there that need real commits still
get their own database from the helpers here."""

import shutil
import socket
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import webtest
from hypothesis import HealthCheck, settings
from pyramid.paster import get_appsettings
from sqlalchemy.orm import Session

from app import main
from app.models import get_engine
from app.scripts.initialize_db import initialize

ROOT = Path(__file__).resolve().parents[1]
WRANGLER_EMAIL = "admin@example.com"
WRANGLER_PASSWORD = "correct horse battery"


def fuzz_settings(examples: int) -> settings:
    """Hypothesis settings of the fuzzers: the same examples on every run (a failure found in
    CI is found again here), no database of past failures, no per-example deadline (a real
    app answers each one)."""
    return settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


def wait_until(condition, what: str, timeout: float = 120.0) -> None:
    """Poll until the condition holds; after a generous deadline, fail saying what never
    happened. The deadline only ends a wait that would never end: nothing is timed."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"gave up after {timeout} s waiting for {what}"
        time.sleep(0.05)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def settings_for(folder: Path, **overrides) -> dict:
    settings = dict(get_appsettings(str(ROOT / "testing.ini")))
    settings.update(
        {
            "sqlalchemy.url": f"sqlite:///{folder / 'RandoPony-testing.sqlite'}",
            "celery.broker_url": f"sqla+sqlite:///{folder / 'celery.sqlite'}",
            "rider_lists_dir": str(folder / "rider_lists"),
            "private_credentials": str(folder / "private_credentials"),
            "session_secret": "test-session-secret",
            # Port 9 (discard) refuses at once: membership answers "unknown" without waiting.
            "initialize.membership_check_url": "http://127.0.0.1:9/check?first={first_name}&last={last_name}",
            "smtp.port": "9",
        }
    )
    settings.update(overrides)
    return settings


@pytest.fixture(scope="session")
def template_db(tmp_path_factory) -> Path:
    """One database migrated and initialised for the whole run; tests get copies."""
    folder = tmp_path_factory.mktemp("template")
    initialize(
        settings_for(folder), wrangler_email=WRANGLER_EMAIL, wrangler_password=WRANGLER_PASSWORD
    )
    return folder / "RandoPony-testing.sqlite"


def own_database(folder: Path, template_db: Path) -> dict:
    """Settings for a copy of the template database in the folder."""
    shutil.copy(template_db, folder / "RandoPony-testing.sqlite")
    return settings_for(folder)


@contextmanager
def session_on(settings: dict):
    """A session on the settings' database, for arranging rows and checking what views stored."""
    engine = get_engine(settings)
    session = Session(engine, expire_on_commit=False)
    try:
        yield session
    finally:
        session.close()
        engine.dispose()


@pytest.fixture
def app_settings(tmp_path, template_db) -> dict:
    return own_database(tmp_path, template_db)


@pytest.fixture
def wsgi_app(app_settings):
    return main({}, **app_settings)


@pytest.fixture
def testapp(wsgi_app):
    return webtest.TestApp(wsgi_app, extra_environ={"HTTP_HOST": "randopony.localhost"})


@pytest.fixture
def db(app_settings):
    with session_on(app_settings) as session:
        yield session


@pytest.fixture
def login(testapp):
    """Log a wrangler in through the login form."""

    def log_in(email=WRANGLER_EMAIL, password=WRANGLER_PASSWORD):
        form = testapp.get("/admin/login").forms["login"]
        form["email"] = email
        form["password"] = password
        return form.submit()

    return log_in


# The longest modules first: `make test` runs modules side by side (pytest-xdist, a whole module
# to a worker), and the run ends with its slowest module, so that one must not start last.
LONGEST_FIRST = (
    "tests/deploy/test_promote.py",
    "tests/deploy/test_sync.py",
    "tests/deploy/test_ssh_flows.py",
    "tests/deploy/test_prompts.py",
    "tests/deploy/test_staging_local.py",
    "tests/deploy/test_old_releases.py",
)


def pytest_collection_modifyitems(items):
    def rank(item):
        path = item.nodeid.split("::")[0]
        return LONGEST_FIRST.index(path) if path in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: the order within a module stays as written
