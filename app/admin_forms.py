"""Form schemas for the wranglers' pages: logging in, brevets, populaires and wranglers.

Each event schema checks the fields one by one, then (when they all pass) the dates together;
`brevet_fields` / `populaire_fields` turn clean values into model columns and `*_form_values`
turn a stored row back into what the form shows.
"""

import re
from datetime import date, datetime
from urllib.parse import urlsplit

import colander

from .forms import EMAIL_MAX, email_list_validator, email_node, lower, text
from .models.events import BREVET_DISTANCES, REGIONS, default_registration_end

DATE_FORMAT = "%Y-%m-%d"  # what <input type="date"> sends
TIME_FORMAT = "%H:%M"  # what <input type="time"> sends
# Anything outside these years is a typo, and strftime misbehaves for years before 1000.
FIRST_YEAR, LAST_YEAR = 2000, 2099
PASSWORD_MIN = 8
PASSWORD_MAX = 1000
SHORT_NAME_MAX = 20
# A rider's chosen distance is stored in a 20 character column.
POPULAIRE_DISTANCE_MAX = 20


class Parsed(colander.SchemaType):
    """A date or time in exactly one format; browsers' date and time inputs send these."""

    def __init__(self, pattern: str, fmt: str, convert, error: str):
        self.pattern = re.compile(pattern)
        self.fmt = fmt
        self.convert = convert
        self.error = error

    def serialize(self, node, appstruct):
        if appstruct is colander.null or appstruct is None:
            return colander.null
        return appstruct.strftime(self.fmt)

    def deserialize(self, node, cstruct):
        if cstruct is colander.null:
            return colander.null
        value = cstruct.strip() if isinstance(cstruct, str) else ""
        if not self.pattern.fullmatch(value):
            raise colander.Invalid(node, self.error)
        try:
            return self.convert(datetime.strptime(value, self.fmt))
        except ValueError as error:
            raise colander.Invalid(node, self.error) from error


def year_in_range(node, value: date):
    if not FIRST_YEAR <= value.year <= LAST_YEAR:
        raise colander.Invalid(node, f"Give a date between {FIRST_YEAR} and {LAST_YEAR}")


def date_node(title, missing=colander.required):
    return colander.SchemaNode(
        Parsed(r"\d{4}-\d{2}-\d{2}", DATE_FORMAT, datetime.date, "Give a date as YYYY-MM-DD"),
        title=title,
        validator=year_in_range,
        missing=missing,
        missing_msg="Required",
    )


def time_node(title, missing=colander.required):
    return colander.SchemaNode(
        Parsed(r"\d{2}:\d{2}", TIME_FORMAT, datetime.time, "Give a time as HH:MM (24 hour clock)"),
        title=title,
        missing=missing,
        missing_msg="Required",
    )


def web_address(node, value):
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc or re.search(r"\s", value):
        raise colander.Invalid(node, "Give a web address starting with http:// or https://")


def url_node(title):
    return text(title, 500, missing=None, validator=web_address)


def choice(title, values, error):
    return colander.SchemaNode(
        colander.String(),
        title=title,
        validator=colander.OneOf(values, msg_err=error),
        missing_msg=error,
    )


def clean_email_list(value: str) -> str:
    return ", ".join(a.strip().lower() for a in value.split(",") if a.strip())


def _registration_end(node, values):
    """The registration end from its two fields, or None for the default; errors go on the
    fields, since a mapping validator only runs when every field passed on its own."""
    end_date, end_time = values.get("registration_end_date"), values.get("registration_end_time")
    if end_date is None and end_time is None:
        return None
    if end_date is None or end_time is None:
        error = colander.Invalid(node)
        missing = "registration_end_date" if end_date is None else "registration_end_time"
        error[missing] = "Give both the date and the time registration closes, or neither"
        raise error
    end = datetime.combine(end_date, end_time)
    if end > datetime.combine(values["date"], values["start_time"]):
        error = colander.Invalid(node)
        error["registration_end_date"] = "Registration must close no later than the start"
        raise error
    return end


def event_validator(node, values):
    _registration_end(node, values)


class EventSchema(colander.MappingSchema):
    """What brevets and populaires share."""

    date = date_node("Date")
    start_time = time_node("Start time")
    start_locn = text("Start location", 200)
    start_map_url = url_node("Start map URL")
    organizer_email = text("Organizer email(s)", 500, validator=email_list_validator)
    registration_end_date = date_node("Registration closes (date)", missing=None)
    registration_end_time = time_node("Registration closes (time)", missing=None)


def _event_fields(values) -> dict:
    start = datetime.combine(values["date"], values["start_time"])
    return {
        "date_time": start,
        "start_locn": values["start_locn"],
        "start_map_url": values["start_map_url"],
        "organizer_email": clean_email_list(values["organizer_email"]),
        "registration_end": _registration_end(None, values) or default_registration_end(start),
    }


def _event_form_values(event) -> dict:
    # Empty when it is the default, so moving the start moves the registration end with it.
    custom_end = event.registration_end != default_registration_end(event.date_time)
    return {
        "date": event.date_time.strftime(DATE_FORMAT),
        "start_time": event.date_time.strftime(TIME_FORMAT),
        "start_locn": event.start_locn,
        "start_map_url": event.start_map_url or "",
        "organizer_email": event.organizer_email,
        "registration_end_date": event.registration_end.strftime(DATE_FORMAT) if custom_end else "",
        "registration_end_time": event.registration_end.strftime(TIME_FORMAT) if custom_end else "",
    }


class BrevetSchema(EventSchema):
    region = choice("Region", list(REGIONS), "Choose a region from the list")
    distance = choice(
        "Distance", [str(d) for d in BREVET_DISTANCES], "Choose a distance from the list"
    )
    alt_start_time = time_node("Alternative start time", missing=None)
    route_name = text("Route name", 100)
    info_question = text("Question for riders", 500, missing=None)

    def validator(self, node, values):
        event_validator(node, values)


def brevet_fields(values) -> dict:
    fields = _event_fields(values)
    alt = values["alt_start_time"]
    fields.update(
        region=values["region"],
        distance=int(values["distance"]),
        route_name=values["route_name"],
        alt_date_time=datetime.combine(values["date"], alt) if alt else None,
        info_question=values["info_question"],
    )
    return fields


def brevet_form_values(brevet) -> dict:
    values = _event_form_values(brevet)
    values.update(
        region=brevet.region,
        distance=str(brevet.distance),
        alt_start_time=brevet.alt_date_time.strftime(TIME_FORMAT) if brevet.alt_date_time else "",
        route_name=brevet.route_name,
        info_question=brevet.info_question or "",
    )
    return values


def populaire_distances(node, value):
    distances = [d.strip() for d in value.split(",") if d.strip()]
    if not distances:
        raise colander.Invalid(node, "At least one distance, e.g. 50 km")
    for distance in distances:
        if len(distance) > POPULAIRE_DISTANCE_MAX:
            raise colander.Invalid(
                node, f"Each distance at most {POPULAIRE_DISTANCE_MAX} characters"
            )


class PopulaireSchema(EventSchema):
    event_name = text("Event name", 100)
    short_name = text(
        "Short name",
        SHORT_NAME_MAX,
        validator=colander.Regex(
            r"^[A-Za-z0-9_-]+$", msg="Letters, digits, - and _ only (it is part of the address)"
        ),
    )
    distance = text("Distances", 50, validator=populaire_distances)
    entry_form_url = url_node("Entry form URL")

    def validator(self, node, values):
        event_validator(node, values)


def populaire_fields(values) -> dict:
    fields = _event_fields(values)
    fields.update(
        event_name=values["event_name"],
        short_name=values["short_name"],
        distance=", ".join(d.strip() for d in values["distance"].split(",") if d.strip()),
        entry_form_url=values["entry_form_url"],
    )
    return fields


def populaire_form_values(populaire) -> dict:
    values = _event_form_values(populaire)
    values.update(
        event_name=populaire.event_name,
        short_name=populaire.short_name,
        distance=populaire.distance,
        entry_form_url=populaire.entry_form_url or "",
    )
    return values


def password_node(required: bool):
    # Not stripped: spaces are allowed in passwords.
    return colander.SchemaNode(
        colander.String(),
        name="password",
        title="Password",
        validator=colander.Length(
            min=PASSWORD_MIN,
            max=PASSWORD_MAX,
            min_err=f"At least {PASSWORD_MIN} characters",
            max_err=f"At most {PASSWORD_MAX} characters",
        ),
        missing=colander.required if required else None,
        missing_msg="Required",
    )


class WranglerSchema(colander.MappingSchema):
    email = email_node()


def wrangler_schema(new: bool):
    """On edit an empty password means "keep the current one"."""
    schema = WranglerSchema()
    schema.add(password_node(required=new))
    return schema


class LoginSchema(colander.MappingSchema):
    """No format check on the email: a failed login says nothing about which field was wrong."""

    email = colander.SchemaNode(
        colander.String(),
        preparer=lower,
        validator=colander.Length(max=EMAIL_MAX, max_err=f"At most {EMAIL_MAX} characters"),
        missing_msg="Required",
    )
    # No password is longer (see password_node), and argon2 would hash megabytes.
    password = colander.SchemaNode(
        colander.String(),
        validator=colander.Length(max=PASSWORD_MAX, max_err=f"At most {PASSWORD_MAX} characters"),
        missing_msg="Required",
    )


# What the form page shows, in order: (name, label, input type or choices, required, maxlength).
EVENT_FIELDS_TAIL = [
    ("start_locn", "Start location", "text", True, 200),
    ("start_map_url", "Start map URL", "url", False, 500),
    ("organizer_email", "Organizer email(s), comma separated", "text", True, 500),
    (
        "registration_end_date",
        "Registration closes (date; default: day before)",
        "date",
        False,
        None,
    ),
    ("registration_end_time", "Registration closes (time; default noon)", "time", False, None),
]
BREVET_FIELDS = [
    ("region", "Region", list(REGIONS.items()), True, None),
    ("distance", "Distance", [(str(d), f"{d} km") for d in BREVET_DISTANCES], True, None),
    ("date", "Date", "date", True, None),
    ("start_time", "Start time", "time", True, None),
    ("alt_start_time", "Alternative start time", "time", False, None),
    ("route_name", "Route name", "text", True, 100),
    *EVENT_FIELDS_TAIL,
    ("info_question", "Question for riders", "text", False, 500),
]
POPULAIRE_FIELDS = [
    ("event_name", "Event name", "text", True, 100),
    ("short_name", "Short name (letters, digits, - and _)", "text", True, SHORT_NAME_MAX),
    ("distance", "Distances, comma separated (e.g. 50 km, 100 km)", "text", True, 50),
    ("date", "Date", "date", True, None),
    ("start_time", "Start time", "time", True, None),
    *EVENT_FIELDS_TAIL,
    ("entry_form_url", "Entry form URL", "url", False, 500),
]


def wrangler_fields(new: bool):
    password_label = "Password" if new else "New password (leave empty to keep the current one)"
    return [
        ("email", "Email address", "email", True, 254),
        ("password", password_label, "password", new, PASSWORD_MAX),
    ]
