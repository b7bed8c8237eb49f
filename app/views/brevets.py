"""Brevet pages: /brevets/, /brevets/<region>/, /brevets/<region>/<distance>/<date>..."""

from datetime import datetime, timedelta

from pyramid.httpexceptions import HTTPNotFound
from pyramid.view import view_config
from sqlalchemy import select

from .. import signup
from ..models import Brevet
from ..models.events import BREVET_DISTANCES, MOVED_ON_AFTER, REGIONS, URL_DATE_FORMAT
from . import events


def current_brevets(request, region=None):
    query = select(Brevet).where(
        Brevet.date_time >= datetime.combine(request.today - MOVED_ON_AFTER, datetime.min.time())
    )
    if region:
        query = query.where(Brevet.region == region)
    return request.db.scalars(
        query.order_by(Brevet.date_time, Brevet.region, Brevet.distance)
    ).all()


def parse_event_url(matchdict):
    """(region, distance, date) from the URL, or 404 for anything that is not one."""
    region = matchdict["region"]
    if region not in REGIONS:
        raise HTTPNotFound(f"There is no region {region!r}.")
    try:
        distance = int(matchdict["distance"])
        day = datetime.strptime(matchdict["date"], URL_DATE_FORMAT).date()
    except ValueError as error:
        raise HTTPNotFound("That is not a brevet address.") from error
    if distance not in BREVET_DISTANCES:
        raise HTTPNotFound(f"There are no {distance} km brevets.")
    return region, distance, day


def find_brevet(request):
    """The brevet the URL names. A future one not set up yet answers "coming soon"."""
    region, distance, day = parse_event_url(request.matchdict)
    start = datetime.combine(day, datetime.min.time())
    brevet = request.db.scalar(
        select(Brevet).where(
            Brevet.region == region,
            Brevet.distance == distance,
            Brevet.date_time >= start,
            Brevet.date_time < start + timedelta(days=1),
        )
    )
    if brevet is None:
        if day >= request.today:
            return None, events.page(
                request, "coming_soon.jinja2", region=region, distance=distance, day=day
            )
        raise HTTPNotFound("We have no record of that brevet.")
    return brevet, None


@view_config(route_name="brevet.list", renderer="brevets/list.jinja2")
def brevet_list(request):
    return {"brevets": current_brevets(request), "region": None}


@view_config(route_name="brevet.region", renderer="brevets/list.jinja2")
def region_list(request):
    region = request.matchdict["region"]
    if region not in REGIONS:
        raise HTTPNotFound(f"There is no region {region!r}.")
    return {"brevets": current_brevets(request, region), "region": region}


@view_config(route_name="brevet")
def brevet_page(request):
    brevet, answer = find_brevet(request)
    return answer or events.event_page(request, brevet)


@view_config(route_name="brevet.entry", request_method=("GET", "POST"))
def brevet_entry(request):
    if request.method == "POST":
        signup.ask_membership_first(request)
    brevet, answer = find_brevet(request)
    return answer or events.entry_page(request, brevet)


@view_config(route_name="brevet.rider_emails")
def brevet_rider_emails(request):
    brevet, answer = find_brevet(request)
    if brevet is None:
        raise HTTPNotFound()
    return events.rider_emails(request, brevet)


@view_config(route_name="brevet.rider_list")
def brevet_rider_list(request):
    brevet, answer = find_brevet(request)
    if brevet is None:
        raise HTTPNotFound()
    return events.rider_list(request, brevet)
