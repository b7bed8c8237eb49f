"""Outgoing email, written in the same transaction as the change that causes it.

A celery task sends each row after the transaction commits and marks it sent, so a rolled-back
request never mails anyone and a retried task never mails twice.
"""

from datetime import datetime

from sqlalchemy import DateTime, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from .meta import Base


class OutboundEmail(Base):
    __tablename__ = "outbound_emails"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    to_addrs: Mapped[str] = mapped_column(Text, nullable=False)  # comma separated
    reply_to: Mapped[str | None] = mapped_column(Text)
    subject: Mapped[str] = mapped_column(String(300), nullable=False)
    body: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime, nullable=False, default=datetime.now)
    # A worker claims a row before sending, so two deliveries of one task cannot both send.
    claimed_at: Mapped[datetime | None] = mapped_column(DateTime)
    sent_at: Mapped[datetime | None] = mapped_column(DateTime)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)

    @property
    def recipients(self) -> list[str]:
        return [a.strip() for a in self.to_addrs.split(",") if a.strip()]
