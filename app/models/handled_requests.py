"""Writes already handled, by the id the host's router gives each request.

When an app process dies while it holds a write, the router cannot tell whether the write was
stored. It sends the request again with the same id: if the first try committed, its row here
(written in the same transaction as the write itself) answers the second try with the first
one's redirect, and nothing is done twice. See app/request_replay.py.
"""

from datetime import datetime

from sqlalchemy import DateTime, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from .meta import Base


class HandledRequest(Base):
    __tablename__ = "handled_requests"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    status: Mapped[int] = mapped_column(Integer, nullable=False)
    location: Mapped[str | None] = mapped_column(String(2000))
    handled_at: Mapped[datetime] = mapped_column(
        DateTime, nullable=False, default=datetime.now, index=True
    )
