"""Fixtures of the functional tests: the app is built once for the whole run, and each test runs
in a transaction that is rolled back at its end (the cookiecutter's "doomed transaction").

A test's requests and its `db` session share one connection to the shared database, inside that
transaction. Each transaction the app opens there (a request's, through pyramid_tm and
zope.sqlalchemy, and the short ones it opens on its own: the login throttle's, the replay check's,
the membership lookup's) is a savepoint, released where the app commits and rolled back where it
aborts, so what one request commits the next one sees, as on a database of its own. Nothing a
test does reaches the database file; the next test starts from the template's rows again.

A test about real commits, seen by another connection, thread or process (the page cache's token
reader, a second app, SQLite's write lock), is marked `own_database` and keeps the fixtures of
tests/conftest.py: a copy of the template database and an app of its own.
"""

import re
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from pyramid.router import Router
from sqlalchemy import Connection, Engine, event, select
from sqlalchemy.orm import Session

from app import main, page_cache, worker
from app.models import Wrangler
from app.models.page_generation import current_token
from app.page_cache import PageCache
from tests.conftest import own_database, session_on

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
OWN_DATABASE = "own_database"


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        f"{OWN_DATABASE}: the test gets a copy of the template database and an app of its own, "
        "not the shared app and a doomed transaction: what it tests needs real commits",
    )


def has_own_database(request) -> bool:
    return request.node.get_closest_marker(OWN_DATABASE) is not None


class QuickReadsInTheTransaction:
    """The shared app's page-cache reads (the token, a wrangler's session generation), through
    the test's connection. The app's own (QuickReads) open the file with sqlite3 and see only
    what is committed, which nothing here ever is; test_page_cache.py runs the real ones, on
    databases of their own."""

    def __init__(self):
        self.connection: Connection | None = None

    def page_token(self) -> str | None:
        return None if self.connection is None else current_token(self.connection)

    def session_generation(self, wrangler_id: int) -> int | None:
        if self.connection is None:
            return None
        return self.connection.execute(
            select(Wrangler.session_generation).where(Wrangler.id == wrangler_id)
        ).scalar()


@dataclass
class DoomedTransaction:
    connection: Connection
    session: Session  # the test's `db`
    settings: dict  # the test's `app_settings`
    registry_settings_before: dict
    data_version_before: int
    problems: list[str] = field(default_factory=list)

    def settle(self) -> None:
        """The app opens a transaction: the test's session ends its own first. A savepoint of
        the test's left open under the app's would take the app's writes with it at the test's
        next rollback (`fresh`)."""
        db = self.session
        if db.new or db.dirty or db.deleted or db.info.get("flushed"):
            self.problems.append(
                "the test's session had changes it had not committed when the app opened a "
                "transaction (on a database of its own the app would not see them): commit first"
            )
            raise RuntimeError(self.problems[-1])
        if db.in_transaction():
            db.commit()


def session_in(connection: Connection) -> Session:
    """The test's `db`: its commits are savepoints released in the doomed transaction."""
    db = Session(connection, join_transaction_mode="create_savepoint", expire_on_commit=False)

    @event.listens_for(db, "after_flush")
    def flushed(session, _context):
        session.info["flushed"] = True

    @event.listens_for(db, "after_transaction_end")
    def ended(session, transaction):
        if transaction.parent is None:
            session.info.pop("flushed", None)

    return db


@dataclass
class SharedSite:
    """The app of the whole run, on its own copy of the template database."""

    app: Router
    settings: dict
    engine: Engine
    page_cache: PageCache
    reads: QuickReadsInTheTransaction
    # A connection of its own to the database file: PRAGMA data_version changes when another
    # connection commits, which no test on a doomed transaction may do.
    watcher: sqlite3.Connection
    current: DoomedTransaction | None = None

    @property
    def session_factory(self):
        return self.app.registry["dbsession_factory"]

    def data_version(self) -> int:
        return self.watcher.execute("PRAGMA data_version").fetchone()[0]

    def app_transaction_begins(self, _session, transaction) -> None:
        if transaction.parent is None and self.current is not None:
            self.current.settle()

    def begin(self, folder: Path) -> DoomedTransaction:
        connection = self.engine.connect()
        connection.begin()
        # What a test changes in the app's settings (a timeout, the SMTP port) it changes for
        # itself. Its rider lists and broker are its own, as on a database of its own.
        registry_settings = self.app.registry.settings
        own = {
            "rider_lists_dir": str(folder / "rider_lists"),
            "celery.broker_url": f"sqla+sqlite:///{folder / 'celery.sqlite'}",
        }
        doomed = DoomedTransaction(
            connection,
            session_in(connection),
            {**self.settings, **own},
            dict(registry_settings),
            self.data_version(),
        )
        registry_settings.update(own)
        worker.configure(registry_settings)
        self.page_cache.entries.clear()
        self.reads.connection = connection
        self.session_factory.configure(bind=connection, join_transaction_mode="create_savepoint")
        self.current = doomed
        return doomed

    def end(self, doomed: DoomedTransaction) -> None:
        self.current = None
        doomed.session.close()
        self.session_factory.configure(
            bind=self.engine, join_transaction_mode="conservative_savepoint"
        )
        self.reads.connection = None
        doomed.connection.rollback()
        doomed.connection.close()
        self.app.registry.settings.clear()
        self.app.registry.settings.update(doomed.registry_settings_before)
        if doomed.problems:
            pytest.fail("; ".join(doomed.problems))
        if self.data_version() != doomed.data_version_before:
            pytest.fail(
                "the test committed to the shared database (an app or connection of its own on "
                f"{self.settings['sqlalchemy.url']}): mark it {OWN_DATABASE}"
            )


@pytest.fixture(scope="session")
def shared_site(tmp_path_factory, template_db):
    folder = tmp_path_factory.mktemp("shared")
    settings = own_database(folder, template_db)
    built = {}
    with pytest.MonkeyPatch.context() as patch:
        # The app's page cache and its reads, kept to be reset and joined to each test.
        patch.setattr(page_cache, "PageCache", lambda: built.setdefault("cache", PageCache()))
        patch.setattr(
            page_cache,
            "QuickReads",
            lambda _engine: built.setdefault("reads", QuickReadsInTheTransaction()),
        )
        app = main({}, **settings)
    watcher = sqlite3.connect(folder / "RandoPony-testing.sqlite")
    site = SharedSite(
        app,
        settings,
        app.registry["db_engine"],
        built["cache"],
        built["reads"],
        watcher,
    )
    event.listen(site.session_factory, "after_transaction_create", site.app_transaction_begins)
    yield site
    watcher.close()
    site.engine.dispose()


@pytest.fixture
def doomed_transaction(shared_site, tmp_path):
    doomed = shared_site.begin(tmp_path)
    yield doomed
    shared_site.end(doomed)


@pytest.fixture
def app_settings(request, tmp_path, template_db) -> dict:
    if has_own_database(request):
        return own_database(tmp_path, template_db)
    return request.getfixturevalue("doomed_transaction").settings


@pytest.fixture
def wsgi_app(request, app_settings):
    if has_own_database(request):
        return main({}, **app_settings)
    request.getfixturevalue("doomed_transaction")
    return request.getfixturevalue("shared_site").app


@pytest.fixture
def db(request, app_settings):
    """A session for arranging rows and checking what views stored: in the test's doomed
    transaction, or on the test's own database."""
    if has_own_database(request):
        with session_on(app_settings) as session:
            yield session
    else:
        yield request.getfixturevalue("doomed_transaction").session


@pytest.fixture
def admin(testapp, login):
    """The test app with the first wrangler logged in."""
    response = login()
    assert response.status_int == 302, response
    return testapp


@pytest.fixture
def csrf_token(testapp):
    """The session's CSRF token, as a page of the site hands it out."""

    def token(path="/admin/"):
        return CSRF.search(testapp.get(path).text).group(1)

    return token


@pytest.fixture
def fresh(db):
    """The test's session, made to see what requests committed since it last read."""

    def reread():
        # expire_all alone is not enough: on a database of its own, an open read transaction
        # keeps its SQLite snapshot (in the doomed transaction, the rollback ends its savepoint).
        db.rollback()
        db.expire_all()
        return db

    return reread
