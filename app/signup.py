"""Pre-registration: store the rider once, then mail the rider and the organizers and update
the rider list, all after the request's transaction commits."""

import unicodedata

from pyramid.renderers import render
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from .membership import check_membership
from .models import Brevet, BrevetRider, PopulaireRider
from .models.site_config import MissingConfiguration, get_link
from .outbox import queue_email
from .tasks import update_rider_list


def same_name(a: str, b: str) -> bool:
    """Names compared as people read them: any case (Émile, ÉMILE), any Unicode form. SQLite's
    lower() folds ASCII only, so this happens here, not in the query."""
    return fold(a) == fold(b)


def fold(name: str) -> str:
    return unicodedata.normalize("NFC", name).casefold()


def find_existing(db, rider_cls, event, values):
    event_column = rider_cls.brevet_id if rider_cls is BrevetRider else rider_cls.populaire_id
    same_address = db.scalars(
        select(rider_cls).where(event_column == event.id, rider_cls.email == values["email"])
    )
    return next(
        (
            rider
            for rider in same_address
            if same_name(rider.first_name, values["first_name"])
            and same_name(rider.last_name, values["last_name"])
        ),
        None,
    )


def ask_membership_first(request) -> None:
    """Ask the club about the names a sign-up POST carries before the request opens its
    database transaction: a write request holds SQLite's write lock for its whole transaction,
    and every other sign-up would wait on the club's service. register() uses the answer."""
    first, last = request.POST.get("first_name", ""), request.POST.get("last_name", "")
    # A name sent as a file is not a str: the form will refuse it.
    if not isinstance(first, str) or not isinstance(last, str):
        return
    first, last = first.strip(), last.strip()
    if not first or not last:
        return  # the form will say what is missing
    with request.registry["dbsession_factory"]() as db:
        try:
            template = get_link(db, "membership_check_url")
        except MissingConfiguration:
            return
    timeout = float(request.registry.settings.get("membership.timeout", 3))
    request.membership_answer = ((first, last), check_membership(template, first, last, timeout))


def membership_status(request, values):
    """Asked before the transaction when the view could (see ask_membership_first)."""
    asked = getattr(request, "membership_answer", NOT_ASKED)
    if asked is not NOT_ASKED and asked[0] == (values["first_name"], values["last_name"]):
        return asked[1]
    settings = request.registry.settings
    try:
        template = get_link(request.db, "membership_check_url")
    except MissingConfiguration:
        return None
    timeout = float(settings.get("membership.timeout", 3))
    return check_membership(template, values["first_name"], values["last_name"], timeout)


NOT_ASKED = object()


def register(request, event, values) -> tuple[object, bool]:
    """Add the rider to the event; returns (rider, created). A second sign-up with the same
    name and email adds nothing."""
    rider_cls = BrevetRider if isinstance(event, Brevet) else PopulaireRider
    existing = find_existing(request.db, rider_cls, event, values)
    if existing is not None:
        return existing, False
    fields = {
        "email": values["email"],
        "first_name": values["first_name"],
        "last_name": values["last_name"],
        "comment": values.get("comment"),
    }
    if rider_cls is BrevetRider:
        fields.update(
            brevet_id=event.id,
            bike_type=values["bike_type"],
            info_answer=values.get("info_answer"),
            member_status=membership_status(request, values),
        )
    else:
        distances = event.distances
        fields.update(
            populaire_id=event.id,
            distance=values.get("distance") or (distances[0] if distances else None),
        )
    rider = rider_cls(**fields)
    try:
        # A savepoint, so a sign-up racing an identical one ends as "already registered".
        with request.db.begin_nested():
            request.db.add(rider)
    except IntegrityError:
        return find_existing(request.db, rider_cls, event, values), False
    request.db.expire(event, ["riders"])
    notify(request, event, rider)
    return rider, True


def event_urls(request, event, base: str | None = None) -> dict[str, str]:
    """The public page and the organizer's secret links of an event; under `base` when given,
    else on the address the request came to (for pages)."""
    if isinstance(event, Brevet):
        route, kw = (
            "brevet",
            dict(region=event.region, distance=event.distance, date=event.url_date),
        )
    else:
        route, kw = "populaire", dict(short_name=event.short_name)
    kw["_app_url"] = base
    return {
        "page": request.route_url(route, **kw),
        "rider_emails": request.route_url(f"{route}.rider_emails", uuid=event.uuid, **kw),
        "rider_list_xlsx": request.route_url(
            f"{route}.rider_list", uuid=event.uuid, ext="xlsx", **kw
        ),
        "rider_list_csv": request.route_url(
            f"{route}.rider_list", uuid=event.uuid, ext="csv", **kw
        ),
    }


def mail_urls(request, event) -> dict[str, str]:
    """The same links for mail, under the site's configured address (site.url, which the
    release machinery sets per release): never under the Host a request came with, which a
    client chooses."""
    return event_urls(request, event, base=site_url(request.registry.settings))


def site_url(settings) -> str:
    return settings.get("site.url") or DEFAULT_SITE_URL


# For a site run without a configured address (a developer's own ini): it mails links that
# lead nowhere rather than to an address a request chose.
DEFAULT_SITE_URL = "http://randopony.invalid"


def notify(request, event, rider) -> None:
    context = {"event": event, "rider": rider, "urls": mail_urls(request, event)}
    try:
        context["membership_link"] = get_link(request.db, "membership_link")
    except MissingConfiguration:
        context["membership_link"] = None
    queue_email(
        request,
        to=[rider.email],
        reply_to=event.organizer_emails,
        subject=f"Pre-registration confirmation for {event.title}",
        body=render("email/rider_confirmation.txt", context, request=request),
    )
    queue_email(
        request,
        to=event.organizer_emails,
        subject=f"{rider.full_name} has pre-registered for {event.title}",
        body=render("email/organizer_notification.txt", context, request=request),
    )
    request.enqueue(update_rider_list, event.kind, event.id)
