"""Failed logins, per client address and per account, for the login backoff (app/login_throttle.py).

In the database rather than in memory: a release runs two app processes, and a restart must not
hand an attacker a fresh allowance.
"""

from datetime import datetime

from sqlalchemy import DateTime, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from .meta import Base


class LoginFailure(Base):
    __tablename__ = "login_failures"

    # "client:<address>" or "account:<sha256 of the email>": no address of a person in clear.
    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    blocked_until: Mapped[datetime | None] = mapped_column(DateTime)
    last_failure: Mapped[datetime] = mapped_column(DateTime, nullable=False, index=True)
