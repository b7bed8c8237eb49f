"""Brevets and populaires: the events riders pre-register for."""

import uuid
from datetime import date, datetime, time, timedelta

from sqlalchemy import DateTime, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .meta import Base

REGIONS = {
    "LM": "Lower Mainland",
    "VI": "Vancouver Island",
    "PR": "Peace Region",
    "SI": "Southern Interior",
    "HW": "Hell Week",
    "6K": "6K",
}
BREVET_DISTANCES = (200, 300, 400, 600, 1000, 1200, 2000)
# An event this many days past its start has "moved on" to the results page.
MOVED_ON_AFTER = timedelta(days=7)
URL_DATE_FORMAT = "%d%b%Y"


def new_uuid() -> str:
    return str(uuid.uuid4())


def default_registration_end(start: datetime) -> datetime:
    """Noon on the day before the start, as the original site did."""
    return datetime.combine(start.date() - timedelta(days=1), time(12, 0))


class EventMixin:
    """What brevets and populaires share. Times are naive, in the club's time zone."""

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    date_time: Mapped[datetime] = mapped_column(DateTime, nullable=False)
    start_locn: Mapped[str] = mapped_column(String(200), nullable=False)
    start_map_url: Mapped[str | None] = mapped_column(String(500))
    organizer_email: Mapped[str] = mapped_column(String(500), nullable=False)
    registration_end: Mapped[datetime] = mapped_column(DateTime, nullable=False)
    # Secret part of the organizer's links (rider emails, rider list downloads).
    uuid: Mapped[str] = mapped_column(String(36), nullable=False, unique=True, default=new_uuid)

    @property
    def organizer_emails(self) -> list[str]:
        return [e.strip() for e in self.organizer_email.split(",") if e.strip()]

    @property
    def url_date(self) -> str:
        return self.date_time.strftime(URL_DATE_FORMAT)

    @property
    def map_url(self) -> str:
        if self.start_map_url:
            return self.start_map_url
        from urllib.parse import quote_plus

        return "https://www.openstreetmap.org/search?query=" + quote_plus(self.start_locn)

    def registration_open(self, now: datetime) -> bool:
        return now < self.registration_end

    def moved_on(self, today: date) -> bool:
        return self.date_time.date() + MOVED_ON_AFTER < today


class Brevet(EventMixin, Base):
    __tablename__ = "brevets"
    __table_args__ = (UniqueConstraint("region", "distance", "date_time"),)

    region: Mapped[str] = mapped_column(String(2), nullable=False)
    distance: Mapped[int] = mapped_column(Integer, nullable=False)
    route_name: Mapped[str] = mapped_column(String(100), nullable=False)
    alt_date_time: Mapped[datetime | None] = mapped_column(DateTime)
    info_question: Mapped[str | None] = mapped_column(Text)

    riders = relationship(
        "BrevetRider",
        back_populates="brevet",
        cascade="all, delete-orphan",
        order_by="(BrevetRider.last_name, BrevetRider.first_name)",
    )

    @property
    def kind(self) -> str:
        return "brevet"

    @property
    def title(self) -> str:
        return f"{self.region}{self.distance} {self.date_time:%d-%b-%Y}"

    @property
    def long_title(self) -> str:
        return f"{REGIONS.get(self.region, self.region)} {self.distance} km {self.route_name}"


class Populaire(EventMixin, Base):
    __tablename__ = "populaires"

    event_name: Mapped[str] = mapped_column(String(100), nullable=False)
    short_name: Mapped[str] = mapped_column(String(20), nullable=False, unique=True)
    distance: Mapped[str] = mapped_column(String(50), nullable=False)
    entry_form_url: Mapped[str | None] = mapped_column(String(500))

    riders = relationship(
        "PopulaireRider",
        back_populates="populaire",
        cascade="all, delete-orphan",
        order_by="(PopulaireRider.last_name, PopulaireRider.first_name)",
    )

    @property
    def kind(self) -> str:
        return "populaire"

    @property
    def title(self) -> str:
        return f"{self.event_name} {self.date_time:%d-%b-%Y}"

    @property
    def long_title(self) -> str:
        return self.event_name

    @property
    def distances(self) -> list[str]:
        """'50 km, 100 km' -> ['50 km', '100 km']"""
        return [d.strip() for d in self.distance.split(",") if d.strip()]
