"""The reads the page cache makes on every request, outside any view and its transaction: the
page-generation token (page_generation.py) and, for a logged-in wrangler's Admin link, their
session generation. Each is one indexed row, so the connection is what costs: on SQLite a plain
sqlite3 connection per thread, measured at a twentieth of a pooled SQLAlchemy connection and a
fiftieth of an ORM session; elsewhere the engine. They see only what is committed.

Each read raises sqlite3.Error or SQLAlchemyError when the database is away.
"""

import sqlite3
import threading

from sqlalchemy import text

from .page_generation import TOKEN_QUERY

SESSION_GENERATION_QUERY = "SELECT session_generation FROM wranglers WHERE id = :wrangler_id"


class QuickReads:
    def __init__(self, engine):
        self.engine = engine
        self.local = threading.local()
        database = engine.url.database if engine.dialect.name == "sqlite" else None
        # mode=rw: never create an empty database where the real one is missing.
        self.sqlite_uri = (
            f"file:{database}?mode=rw" if database and database != ":memory:" else None
        )

    def page_token(self) -> str | None:
        return self._scalar(TOKEN_QUERY, {})

    def session_generation(self, wrangler_id: int) -> int | None:
        """None when there is no such wrangler."""
        return self._scalar(SESSION_GENERATION_QUERY, {"wrangler_id": wrangler_id})

    def _scalar(self, query: str, params: dict):
        if self.sqlite_uri is None:
            with self.engine.connect() as connection:
                return connection.execute(text(query), params).scalar()
        connection = getattr(self.local, "connection", None)
        if connection is None:
            connection = sqlite3.connect(
                self.sqlite_uri, uri=True, isolation_level=None, timeout=10
            )
            self.local.connection = connection
        row = connection.execute(query, params).fetchone()
        return row[0] if row else None
