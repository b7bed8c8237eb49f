"""What every template and view can rely on: the club's clock, a few lookups and the
visitor's own parts of a page (request.visitor_part)."""

from datetime import datetime
from zoneinfo import ZoneInfo

from pyramid.events import BeforeRender, subscriber

from .models.events import REGIONS
from .models.riders import BIKE_TYPES


def club_now(settings) -> datetime:
    """Now in the club's time zone, naive like the event times in the database."""
    return datetime.now(ZoneInfo(settings["timezone"])).replace(tzinfo=None)


@subscriber(BeforeRender)
def add_globals(event):
    event.setdefault("regions", REGIONS)
    event.setdefault("bike_types", BIKE_TYPES)


def includeme(config):
    config.add_request_method(lambda r: club_now(r.registry.settings), "now", reify=True)
    config.add_request_method(lambda r: r.now.date(), "today", reify=True)
    config.include(".visitor_parts")
    config.scan(__name__)
