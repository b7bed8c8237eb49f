"""Rows for tests, with sensible defaults relative to the club's clock."""

from datetime import datetime, time, timedelta

from app.models import Brevet, BrevetRider, Populaire, PopulaireRider, Wrangler
from app.models.events import default_registration_end
from app.templating import club_now

TIMEZONE = {"timezone": "Canada/Pacific"}


def now() -> datetime:
    return club_now(TIMEZONE)


def in_days(days: int, at: time = time(7, 0)) -> datetime:
    return datetime.combine(now().date() + timedelta(days=days), at)


def make_brevet(db, **fields) -> Brevet:
    fields.setdefault("region", "LM")
    fields.setdefault("distance", 200)
    fields.setdefault("route_name", "Seaside Slog")
    fields.setdefault("start_locn", "Tim Hortons, Main St")
    fields.setdefault("date_time", in_days(10))
    fields.setdefault("organizer_email", "organizer@example.com")
    fields.setdefault("registration_end", default_registration_end(fields["date_time"]))
    brevet = Brevet(**fields)
    db.add(brevet)
    db.flush()
    return brevet


def make_populaire(db, **fields) -> Populaire:
    fields.setdefault("event_name", "Spring Populaire")
    fields.setdefault("short_name", "SprPop")
    fields.setdefault("distance", "50 km, 100 km")
    fields.setdefault("start_locn", "Jericho Beach")
    fields.setdefault("date_time", in_days(5, time(9, 0)))
    fields.setdefault("organizer_email", "pop-organizer@example.com")
    fields.setdefault("registration_end", default_registration_end(fields["date_time"]))
    populaire = Populaire(**fields)
    db.add(populaire)
    db.flush()
    return populaire


def make_brevet_rider(db, brevet, **fields) -> BrevetRider:
    fields.setdefault("email", "rider@example.com")
    fields.setdefault("first_name", "Eddy")
    fields.setdefault("last_name", "Merckx")
    fields.setdefault("bike_type", "single")
    rider = BrevetRider(brevet_id=brevet.id, **fields)
    db.add(rider)
    db.flush()
    return rider


def make_populaire_rider(db, populaire, **fields) -> PopulaireRider:
    fields.setdefault("email", "rider@example.com")
    fields.setdefault("first_name", "Eddy")
    fields.setdefault("last_name", "Merckx")
    fields.setdefault("distance", populaire.distances[0])
    rider = PopulaireRider(populaire_id=populaire.id, **fields)
    db.add(rider)
    db.flush()
    return rider


def make_wrangler(db, email="wrangler@example.com", password="correct horse battery") -> Wrangler:
    wrangler = Wrangler(email=email)
    wrangler.set_password(password)
    db.add(wrangler)
    db.flush()
    return wrangler
