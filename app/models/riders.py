"""Riders who pre-registered for an event."""

from datetime import datetime

from sqlalchemy import Boolean, DateTime, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .meta import Base

BIKE_TYPES = {
    "single": "Single",
    "tandem": "Tandem",
    "triplet": "Triplet",
    "quad": "Quad",
    "fixie": "Fixie",
    "single-speed": "Single-speed",
    "recumbent": "Recumbent",
    "recumbent-tandem": "Recumbent tandem",
    "velomobile": "Velomobile",
    "other": "Other",
}


class RiderMixin:
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # Stored lower-cased; with the names it identifies a sign-up (see the unique constraints).
    email: Mapped[str] = mapped_column(String(254), nullable=False)
    first_name: Mapped[str] = mapped_column(String(50), nullable=False)
    last_name: Mapped[str] = mapped_column(String(50), nullable=False)
    comment: Mapped[str | None] = mapped_column(String(500))
    registered_at: Mapped[datetime] = mapped_column(DateTime, nullable=False, default=datetime.now)

    @property
    def full_name(self) -> str:
        return f"{self.first_name} {self.last_name}"


class BrevetRider(RiderMixin, Base):
    __tablename__ = "brevet_riders"
    __table_args__ = (UniqueConstraint("brevet_id", "email", "first_name", "last_name"),)

    brevet_id: Mapped[int] = mapped_column(
        ForeignKey("brevets.id", ondelete="CASCADE"), nullable=False, index=True
    )
    bike_type: Mapped[str] = mapped_column(String(20), nullable=False, default="single")
    # True / False from the club's membership check; None when the check could not answer.
    member_status: Mapped[bool | None] = mapped_column(Boolean)
    info_answer: Mapped[str | None] = mapped_column(Text)

    brevet = relationship("Brevet", back_populates="riders")

    @property
    def event(self):
        return self.brevet

    @property
    def membership(self) -> str:
        return {True: "member", False: "not a member"}.get(self.member_status, "unknown")


class PopulaireRider(RiderMixin, Base):
    __tablename__ = "populaire_riders"
    __table_args__ = (UniqueConstraint("populaire_id", "email", "first_name", "last_name"),)

    populaire_id: Mapped[int] = mapped_column(
        ForeignKey("populaires.id", ondelete="CASCADE"), nullable=False, index=True
    )
    distance: Mapped[str | None] = mapped_column(String(20))

    populaire = relationship("Populaire", back_populates="riders")

    @property
    def event(self):
        return self.populaire
