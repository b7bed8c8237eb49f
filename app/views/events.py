"""What brevet and populaire pages share: the event page, the sign-up form, the organizer's
secret links. The two modules beside this one find the event from the URL."""

import hmac
import re
import unicodedata
from urllib.parse import quote

from pyramid.httpexceptions import HTTPFound, HTTPNotFound
from pyramid.renderers import render_to_response
from pyramid.response import FileResponse, Response

from .. import forms, rider_lists, signup
from ..models import Brevet
from ..models.site_config import MissingConfiguration, get_link

CONTENT_TYPES = {
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "csv": "text/csv; charset=utf-8",
}


def _link(request, key):
    try:
        return get_link(request.db, key)
    except MissingConfiguration:
        return None


def page(request, template, status=200, **values):
    response = render_to_response(template, values, request=request)
    response.status_int = status
    return response


def moved_on(request, event):
    return page(
        request, "moved_on.jinja2", event=event, results_link=_link(request, "results_link")
    )


def event_page(request, event):
    if event.moved_on(request.today):
        return moved_on(request, event)
    return page(
        request,
        "event.jinja2",
        event=event,
        riders=event.riders,
        registration_open=event.registration_open(request.now),
        urls=signup.event_urls(request, event),
    )


def rider_schema(event):
    if isinstance(event, Brevet):
        return forms.brevet_rider_schema(event.info_question)
    return forms.populaire_rider_schema(event.distances)


def entry_page(request, event):
    """The pre-registration form (GET) and its submission (POST)."""
    if event.moved_on(request.today):
        return moved_on(request, event)
    urls = signup.event_urls(request, event)
    if not event.registration_open(request.now):
        entry_form = _link(request, "entry_form")
        if getattr(event, "entry_form_url", None):
            entry_form = event.entry_form_url
        return page(request, "closed.jinja2", event=event, urls=urls, entry_form=entry_form)
    schema = rider_schema(event)
    result = forms.FormResult({}, {}, {})
    if request.method == "POST":
        result = forms.validate(schema, request.POST)
        if result.ok:
            rider, created = signup.register(request, event, result.values)
            if created:
                request.session.flash(
                    f"Thank you, {rider.first_name}! You are pre-registered for {event.title}. "
                    f"A confirmation email is on its way to {rider.email}.",
                    "success",
                )
            else:
                request.session.flash(
                    f"{rider.full_name} <{rider.email}> is already registered for {event.title}.",
                    "info",
                )
            return HTTPFound(urls["page"])
    status = 400 if result.errors else 200
    return page(request, "entry.jinja2", status, event=event, urls=urls, schema=schema, form=result)


def attachment(name: str) -> str:
    """Content-Disposition for a download named after an event, whatever its letters: an ASCII
    name for old clients and the exact one as RFC 5987 `filename*` ("Cœur" broke the header)."""
    plain = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    plain = re.sub(r"[^A-Za-z0-9._-]", "_", plain) or "rider_list"
    return f"attachment; filename=\"{plain}\"; filename*=UTF-8''{quote(name, safe='')}"


def secret_matches(request, event) -> bool:
    """The organizer's secret in the URL, compared in constant time: how long a wrong guess
    takes to refuse says nothing about how much of it was right."""
    given = request.matchdict["uuid"].encode("utf-8", "surrogateescape")
    return hmac.compare_digest(given, event.uuid.encode())


def rider_emails(request, event):
    """The riders' addresses, comma separated, for the organizer's secret link."""
    if not secret_matches(request, event) or event.moved_on(request.today):
        raise HTTPNotFound()
    return Response(", ".join(r.email for r in event.riders), content_type="text/plain")


def rider_list(request, event):
    ext = request.matchdict["ext"]
    if not secret_matches(request, event) or ext not in rider_lists.FORMATS:
        raise HTTPNotFound()
    path = rider_lists.rider_list_path(request.registry.settings, event, ext)
    if not path.exists():
        # The worker writes it after each sign-up; an event with no riders yet has none.
        rider_lists.write_rider_list(request.registry.settings, event)
    if not path.exists():
        raise HTTPNotFound("This rider list could not be written; the other format may be.")
    response = FileResponse(str(path), request=request, content_type=CONTENT_TYPES[ext])
    response.content_disposition = attachment(f"{event.title.replace(' ', '_')}_riders.{ext}")
    response.cache_control = "no-store"
    return response
