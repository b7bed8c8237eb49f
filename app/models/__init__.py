"""The database: models, engine and the request-bound session (`request.db`)."""

import transaction.interfaces
import zope.sqlalchemy
from sqlalchemy import engine_from_config, event
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import configure_mappers, sessionmaker

from . import page_generation
from .events import Brevet, Populaire  # noqa: F401
from .handled_requests import HandledRequest  # noqa: F401
from .login_failures import LoginFailure  # noqa: F401
from .meta import Base, metadata  # noqa: F401
from .outbox import OutboundEmail  # noqa: F401
from .page_generation import PageGeneration  # noqa: F401
from .riders import BrevetRider, PopulaireRider  # noqa: F401
from .site_config import EmailAddress, Link  # noqa: F401
from .wranglers import Wrangler  # noqa: F401

configure_mappers()

page_generation.PUBLIC_MODELS = (Brevet, Populaire, BrevetRider, PopulaireRider, EmailAddress, Link)

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def _tune_sqlite(engine, busy_ms: int, foreign_keys: bool = True) -> None:
    """WAL so readers never wait for a writer, a busy timeout so writers queue instead of failing,
    and BEGIN issued by us so a write request can take the write lock up front (see get_tm_session).
    """

    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None  # let the "begin" hook below issue BEGIN
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={busy_ms:d}")
        cursor.execute(f"PRAGMA foreign_keys={'ON' if foreign_keys else 'OFF'}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(conn):
        mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")


def get_engine(settings, prefix="sqlalchemy."):
    engine = engine_from_config(settings, prefix)
    if engine.dialect.name == "sqlite":
        foreign_keys = str(settings.get("sqlite.foreign_keys", "on")).lower() != "off"
        _tune_sqlite(engine, int(settings.get("sqlite.busy_timeout_ms", 10000)), foreign_keys)
    return engine


def get_session_factory(engine):
    return sessionmaker(bind=engine, expire_on_commit=False)


def get_tm_session(session_factory, transaction_manager, request=None):
    """A session joined to the transaction manager: views never commit, pyramid_tm does."""
    dbsession = session_factory(info={"request": request})
    zope.sqlalchemy.register(dbsession, transaction_manager=transaction_manager)
    if request is not None and request.method in WRITE_METHODS and _is_sqlite(dbsession):
        # A deferred transaction that reads and then writes can hit SQLITE_BUSY without waiting
        # when another writer got in between; taking the write lock first makes writers queue.
        try:
            dbsession.connection(execution_options={"sqlite_begin": "IMMEDIATE"})
        except OperationalError as error:
            if "locked" not in str(error.orig):
                raise
            # Nothing was done yet: pyramid_retry sends the request through again.
            raise WriteLockBusy(str(error.orig)) from error
    return dbsession


class WriteLockBusy(transaction.interfaces.TransientError):
    """Other writers held the database's write lock for the whole busy timeout."""


def _is_sqlite(dbsession) -> bool:
    return dbsession.get_bind().dialect.name == "sqlite"


def includeme(config):
    settings = config.get_settings()
    settings["tm.manager_hook"] = "pyramid_tm.explicit_manager"
    # Otherwise pyramid_tm reads every visitor's session (for a note nothing reads) before the
    # view runs, and the page cache keeps only pages whose rendering never read it.
    settings["tm.annotate_user"] = "false"
    config.include("pyramid_tm")
    config.include("pyramid_retry")

    engine = get_engine(settings)
    session_factory = get_session_factory(engine)
    config.registry["db_engine"] = engine
    config.registry["dbsession_factory"] = session_factory

    def dbsession(request):
        return get_tm_session(session_factory, request.tm, request=request)

    config.add_request_method(dbsession, "db", reify=True)
    config.include("app.request_properties")
