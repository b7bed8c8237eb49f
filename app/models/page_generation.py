"""A token that changes whenever anything a public page shows changes.

Public pages are cached per process (app/page_cache.py); every request compares the cached
page's token with this row (read by quick_reads.py), so a sign-up in any process or release shows
at once everywhere. A random token rather than a counter, so a database copied in from
elsewhere (promotion, staging refresh) can never match a page cached from the old one.
"""

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
