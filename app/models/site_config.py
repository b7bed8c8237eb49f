"""Keyed email addresses and links the site needs to run (set up by initialize_RandoPony_db)."""

from sqlalchemy import Integer, String, select
from sqlalchemy.orm import Mapped, mapped_column

from .meta import Base

REQUIRED_EMAIL_ADDRESSES = ("admin_email", "from_randopony", "club_webmaster")
REQUIRED_LINKS = ("entry_form", "results_link", "membership_check_url", "membership_link")


class EmailAddress(Base):
    __tablename__ = "email_addresses"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(50), nullable=False, unique=True)
    email: Mapped[str] = mapped_column(String(254), nullable=False)


class Link(Base):
    __tablename__ = "links"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(50), nullable=False, unique=True)
    url: Mapped[str] = mapped_column(String(500), nullable=False)


class MissingConfiguration(LookupError):
    """A keyed email address or link the site needs is not in the database."""


def get_email(db, key: str) -> str:
    value = db.scalar(select(EmailAddress.email).where(EmailAddress.key == key))
    if value is None:
        raise MissingConfiguration(
            f"email address {key!r} is not set up; run initialize_RandoPony_db"
        )
    return value


def get_link(db, key: str) -> str:
    value = db.scalar(select(Link.url).where(Link.key == key))
    if value is None:
        raise MissingConfiguration(f"link {key!r} is not set up; run initialize_RandoPony_db")
    return value
