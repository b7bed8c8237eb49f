"""A token that changes whenever anything a public page shows changes.

Public pages are cached per process (app/page_cache.py); every request compares the cached
page's token with this row, so a sign-up in any process or release shows at once everywhere.
A random token rather than a counter, so a database copied in from elsewhere (promotion,
staging refresh) can never match a page cached from the old one.
"""

import sqlite3
import threading
import uuid

from sqlalchemy import Integer, String, event, text, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from .meta import Base


class PageGeneration(Base):
    __tablename__ = "page_generation"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token: Mapped[str] = mapped_column(String(36), nullable=False)


# Models whose rows appear on public pages; set by app.models once they are all defined.
PUBLIC_MODELS: tuple[type, ...] = ()


def _touches_public_pages(session: Session) -> bool:
    return any(
        isinstance(obj, PUBLIC_MODELS) for obj in (*session.new, *session.dirty, *session.deleted)
    )


@event.listens_for(Session, "before_flush")
def _new_generation(session, _flush_context, _instances):
    if PUBLIC_MODELS and _touches_public_pages(session):
        session.execute(update(PageGeneration).values(token=str(uuid.uuid4())))


TOKEN_QUERY = "SELECT token FROM page_generation WHERE id = 1"


def current_token(connection) -> str | None:
    return connection.execute(text(TOKEN_QUERY)).scalar()


class TokenReader:
    """Reads the current token on every cacheable request, so it must be cheap: on SQLite a
    plain sqlite3 connection per thread (a tenth of the cost of a pooled SQLAlchemy connection);
    elsewhere the engine. Raises sqlite3.Error or SQLAlchemyError when the database is away."""

    def __init__(self, engine):
        self.engine = engine
        self.local = threading.local()
        database = engine.url.database if engine.dialect.name == "sqlite" else None
        # mode=rw: never create an empty database where the real one is missing.
        self.sqlite_uri = (
            f"file:{database}?mode=rw" if database and database != ":memory:" else None
        )

    def __call__(self) -> str | None:
        if self.sqlite_uri is None:
            with self.engine.connect() as connection:
                return current_token(connection)
        connection = getattr(self.local, "connection", None)
        if connection is None:
            connection = sqlite3.connect(
                self.sqlite_uri, uri=True, isolation_level=None, timeout=10
            )
            self.local.connection = connection
        row = connection.execute(TOKEN_QUERY).fetchone()
        return row[0] if row else None
