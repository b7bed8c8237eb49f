"""Wranglers' pages for brevets and populaires: list, add, view, edit, delete, and the setup
actions. Both kinds share these views; the route name says which kind a request is about."""

from dataclasses import dataclass
from datetime import datetime, timedelta

from pyramid.httpexceptions import HTTPFound, HTTPMethodNotAllowed, HTTPNotFound
from pyramid.view import view_config
from sqlalchemy import func, select

from .. import admin_forms, forms, setup_actions, signup
from ..models import Brevet, BrevetRider, Populaire, PopulaireRider
from ..security import ADMIN
from .admin_pages import confirm_delete, form_page


def duplicate_brevet(db, columns, brevet) -> dict[str, str]:
    """A brevet's public address is its region, distance and date: two on one day would
    share it."""
    day = datetime.combine(columns["date_time"].date(), datetime.min.time())
    query = select(Brevet.id).where(
        Brevet.region == columns["region"],
        Brevet.distance == columns["distance"],
        Brevet.date_time >= day,
        Brevet.date_time < day + timedelta(days=1),
    )
    if brevet is not None:
        query = query.where(Brevet.id != brevet.id)
    if db.scalar(query) is None:
        return {}
    return {
        "date": f"There is already a {columns['region']}{columns['distance']} brevet on "
        f"{day:%d %b %Y}"
    }


def duplicate_populaire(db, columns, populaire) -> dict[str, str]:
    # Case-insensitively, so two addresses never differ only in case.
    query = select(Populaire.id).where(
        func.lower(Populaire.short_name) == columns["short_name"].lower()
    )
    if populaire is not None:
        query = query.where(Populaire.id != populaire.id)
    if db.scalar(query) is None:
        return {}
    return {"short_name": f"Another populaire is called {columns['short_name']!r} already"}


@dataclass(frozen=True)
class Kind:
    route: str  # "brevets" / "populaires", as in the route names
    label: str
    model: type
    rider_column: object
    schema: type
    fields: list
    columns: object  # clean form values -> model columns
    form_values: object  # model -> what the form shows
    duplicates: object  # (db, columns, event or None) -> {field: error}


KINDS = {
    "brevets": Kind(
        "brevets",
        "brevet",
        Brevet,
        BrevetRider.brevet_id,
        admin_forms.BrevetSchema,
        admin_forms.BREVET_FIELDS,
        admin_forms.brevet_fields,
        admin_forms.brevet_form_values,
        duplicate_brevet,
    ),
    "populaires": Kind(
        "populaires",
        "populaire",
        Populaire,
        PopulaireRider.populaire_id,
        admin_forms.PopulaireSchema,
        admin_forms.POPULAIRE_FIELDS,
        admin_forms.populaire_fields,
        admin_forms.populaire_form_values,
        duplicate_populaire,
    ),
}

# (action in the URL, button, what it does) for the event page.
SETUP_BUTTONS = [
    ("rider-list", "Create the rider list", "Writes the spreadsheet and CSV organizers download."),
    (
        "email-organizer",
        "Email the organizer",
        "Sends the organizer the event page, the rider list and the rider emails links.",
    ),
    ("email-webmaster", "Email the club webmaster", "Sends the webmaster the new page's link."),
    ("1-2-3", "Setup 1-2-3", "All three in order, stopping at the first that fails."),
]


def kind_of(request) -> Kind:
    return KINDS[request.matched_route.name.split(".")[1]]


def get_event(request, kind):
    event = request.db.get(kind.model, int(request.matchdict["id"]))
    if event is None:
        raise HTTPNotFound(f"There is no such {kind.label}.")
    return event


def view_url(request, kind, event) -> str:
    return request.route_url(f"admin.{kind.route}.view", id=event.id)


@view_config(route_name="admin.brevets", permission=ADMIN, renderer="admin/list.jinja2")
@view_config(route_name="admin.populaires", permission=ADMIN, renderer="admin/list.jinja2")
def event_list(request):
    kind = kind_of(request)
    riders = (
        select(func.count())
        .where(kind.rider_column == kind.model.id)
        .correlate(kind.model)
        .scalar_subquery()
    )
    events = request.db.execute(
        select(kind.model, riders).order_by(kind.model.date_time.desc(), kind.model.id.desc())
    ).all()
    route = f"admin.{kind.route}"
    return {
        "heading": kind.route.capitalize(),
        "new_url": request.route_url(f"{route}.new"),
        "new_label": f"Add a {kind.label}",
        "columns": ["Event", "Start", "Riders"],
        "rows": [
            {
                "title": event.title,
                "url": view_url(request, kind, event),
                "cells": [f"{event.date_time:%a %d %b %Y %H:%M}", count],
                "edit": request.route_url(f"{route}.edit", id=event.id),
                "delete": request.route_url(f"{route}.delete", id=event.id),
            }
            for event, count in events
        ],
    }


def event_form(request, kind, event):
    """Add (event None) or edit: a clean POST stores and goes to the event's page; anything
    else shows the form again with each error beside its field, and stores nothing."""
    form = forms.FormResult({}, {}, kind.form_values(event) if event else {})
    if request.method == "POST":
        form = forms.validate(kind.schema(), request.POST)
        if form.ok:
            columns = kind.columns(form.values)
            form.errors.update(kind.duplicates(request.db, columns, event))
        if form.ok:
            if event is None:
                event = kind.model(**columns)
                request.db.add(event)
                verb = "added"
            else:
                for name, value in columns.items():
                    setattr(event, name, value)
                verb = "saved"
            request.db.flush()
            request.session.flash(f"{event.title} {verb}.", "success")
            return HTTPFound(view_url(request, kind, event))
    if event is None:
        heading, cancel = f"Add a {kind.label}", request.route_url(f"admin.{kind.route}")
    else:
        heading, cancel = f"Edit {event.title}", view_url(request, kind, event)
    return form_page(
        request,
        heading=heading,
        fields=kind.fields,
        form=form,
        submit="Save",
        cancel=cancel,
    )


@view_config(route_name="admin.brevets.new", permission=ADMIN)
@view_config(route_name="admin.populaires.new", permission=ADMIN)
def event_new(request):
    return event_form(request, kind_of(request), None)


@view_config(route_name="admin.brevets.edit", permission=ADMIN)
@view_config(route_name="admin.populaires.edit", permission=ADMIN)
def event_edit(request):
    kind = kind_of(request)
    return event_form(request, kind, get_event(request, kind))


@view_config(route_name="admin.brevets.delete", permission=ADMIN)
@view_config(route_name="admin.populaires.delete", permission=ADMIN)
def event_delete(request):
    kind = kind_of(request)
    event = get_event(request, kind)
    if request.method == "POST":
        title, riders = event.title, len(event.riders)
        request.db.delete(event)
        request.session.flash(f"{title} deleted, with its {riders} riders.", "success")
        return HTTPFound(request.route_url(f"admin.{kind.route}"))
    return confirm_delete(
        request,
        what=event.title,
        details=f"Its page and its {len(event.riders)} pre-registered riders go with it.",
        cancel=view_url(request, kind, event),
    )


@view_config(route_name="admin.brevets.view", permission=ADMIN, renderer="admin/event.jinja2")
@view_config(route_name="admin.populaires.view", permission=ADMIN, renderer="admin/event.jinja2")
def event_view(request):
    kind = kind_of(request)
    event = get_event(request, kind)
    route = f"admin.{kind.route}"
    return {
        "event": event,
        "urls": signup.event_urls(request, event),
        "riders": event.riders,
        "edit_url": request.route_url(f"{route}.edit", id=event.id),
        "delete_url": request.route_url(f"{route}.delete", id=event.id),
        "list_url": request.route_url(route),
        "setup": [
            (request.route_url(f"{route}.setup", id=event.id, action=action), label, help)
            for action, label, help in SETUP_BUTTONS
        ],
    }


@view_config(route_name="admin.brevets.setup", permission=ADMIN)
@view_config(route_name="admin.populaires.setup", permission=ADMIN)
def event_setup(request):
    """Run a setup action (POST only: it sends email) and show its results on the event page."""
    kind = kind_of(request)
    event = get_event(request, kind)
    action = request.matchdict["action"]
    if action not in setup_actions.ACTIONS:
        raise HTTPNotFound(f"There is no setup action {action!r}.")
    if request.method != "POST":
        raise HTTPMethodNotAllowed(headers={"Allow": "POST"})
    results, not_done = setup_actions.run(request, event, action)
    for result in results:
        request.session.flash(result.message, "success" if result.ok else "error")
    if not_done:
        request.session.flash("Stopped; not done: " + "; ".join(not_done) + ".", "info")
    return HTTPFound(view_url(request, kind, event))
