"""Populaire pages: /populaires/, /populaires/<short_name>..."""

from datetime import datetime

from pyramid.httpexceptions import HTTPNotFound
from pyramid.view import view_config
from sqlalchemy import select

from ..models import Populaire
from ..models.events import MOVED_ON_AFTER
from . import events


def current_populaires(request):
    since = datetime.combine(request.today - MOVED_ON_AFTER, datetime.min.time())
    return request.db.scalars(
        select(Populaire).where(Populaire.date_time >= since).order_by(Populaire.date_time)
    ).all()


def find_populaire(request):
    short_name = request.matchdict["short_name"]
    populaire = request.db.scalar(select(Populaire).where(Populaire.short_name == short_name))
    if populaire is None:
        raise HTTPNotFound(f"There is no populaire called {short_name!r}.")
    return populaire


@view_config(route_name="populaire.list", renderer="populaires/list.jinja2")
def populaire_list(request):
    return {"populaires": current_populaires(request)}


@view_config(route_name="populaire")
def populaire_page(request):
    return events.event_page(request, find_populaire(request))


@view_config(route_name="populaire.entry", request_method=("GET", "POST"))
def populaire_entry(request):
    return events.entry_page(request, find_populaire(request))


@view_config(route_name="populaire.rider_emails")
def populaire_rider_emails(request):
    return events.rider_emails(request, find_populaire(request))


@view_config(route_name="populaire.rider_list")
def populaire_rider_list(request):
    return events.rider_list(request, find_populaire(request))
