"""initialize_RandoPony_db <ini>: migrate the database to this code's head and insert what the
site needs to run: the keyed email addresses and links, a first wrangler, and (with --demo) a few
current events with riders. Safe to run again: nothing that exists is changed."""

import argparse
import getpass
import os
import sys
from datetime import datetime, time, timedelta

from alembic import command
from pyramid.paster import get_appsettings, setup_logging
from sqlalchemy import func, select

from .. import settings as app_settings
from ..migrations import alembic_config
from ..models import (
    Brevet,
    BrevetRider,
    EmailAddress,
    Link,
    Populaire,
    PopulaireRider,
    Wrangler,
    get_engine,
    get_session_factory,
    wranglers,
)
from ..models.events import default_registration_end
from ..templating import club_now

# Values for a real club; staging and development inis override them with `initialize.<key>`
# settings so that a non-production site never mails real people.
DEFAULT_EMAIL_ADDRESSES = {
    "admin_email": "randopony@randonneurs.bc.ca",
    "from_randopony": "randopony@randonneurs.bc.ca",
    "club_webmaster": "webmaster@randonneurs.bc.ca",
}
DEFAULT_LINKS = {
    "entry_form": "https://randonneurs.bc.ca/organize/eventform.pdf",
    "results_link": "https://randonneurs.bc.ca/results/",
    "membership_check_url": "https://members.randonneurs.bc.ca/check?first_name={first_name}&last_name={last_name}",
    "membership_link": "https://randonneurs.bc.ca/membership/",
}


class InitializeError(RuntimeError):
    pass


def ensure_credentials(settings) -> None:
    path = app_settings.credentials_path(settings)
    if path is not None and not path.exists():
        app_settings.write_credentials(path, app_settings.new_credentials())
        print(f"Created {path} (mode 0400) with a new session secret.")


def migrate(settings) -> None:
    config = alembic_config(settings)
    config.attributes["settings"] = settings
    command.upgrade(config, "head")


def ensure_keyed_rows(db, settings) -> None:
    for model, defaults, field in (
        (EmailAddress, DEFAULT_EMAIL_ADDRESSES, "email"),
        (Link, DEFAULT_LINKS, "url"),
    ):
        existing = set(db.scalars(select(model.key)))
        for key, default in defaults.items():
            if key not in existing:
                db.add(model(key=key, **{field: settings.get(f"initialize.{key}", default)}))


def ensure_wrangler(db, email: str | None, password: str | None) -> None:
    if db.scalar(select(func.count(Wrangler.id))):
        return
    email = email or os.environ.get("RANDOPONY_WRANGLER_EMAIL")
    password = password or os.environ.get("RANDOPONY_WRANGLER_PASSWORD")
    if not email:
        if not sys.stdin.isatty():
            raise InitializeError(
                "no wrangler yet: give --wrangler-email or RANDOPONY_WRANGLER_EMAIL"
            )
        email = input("Email address of the first wrangler (club admin): ").strip()
    if not password:
        if not sys.stdin.isatty():
            raise InitializeError("no wrangler password: set RANDOPONY_WRANGLER_PASSWORD")
        password = getpass.getpass(f"Password for {email}: ")
        if password != getpass.getpass("Once more: "):
            raise InitializeError("the two passwords differ")
    if len(password) < 8:
        raise InitializeError("a wrangler password needs at least 8 characters")
    wrangler = Wrangler(email=email.strip().lower())
    wrangler.set_password(password)
    db.add(wrangler)
    print(f"Created wrangler {wrangler.email}.")


DEMO_RIDERS = [
    ("Ada", "Lovelace"),
    ("Eddy", "Merckx"),
    ("Susan", "Notorangelo"),
    ("Lon", "Haldeman"),
    ("Ken", "Bonner"),
    ("Anna", "Kay"),
]


def add_demo_events(db, now: datetime) -> None:
    if db.scalar(select(func.count(Brevet.id))) or db.scalar(select(func.count(Populaire.id))):
        return
    start = datetime.combine(now.date() + timedelta(days=10), time(7, 0))
    brevets = [
        Brevet(
            region="LM",
            distance=200,
            route_name="Seaside Slog",
            start_locn="Tim Hortons, 8390 Main St, Vancouver",
            date_time=start,
            organizer_email="organizer@example.com",
        ),
        Brevet(
            region="VI",
            distance=300,
            route_name="Island Loop",
            start_locn="Thrifty Foods, Victoria",
            date_time=start + timedelta(days=7, hours=-1),
            organizer_email="organizer@example.com",
            info_question="Will you need a drop bag?",
        ),
        Brevet(
            region="SI",
            distance=600,
            route_name="Kootenay Climb",
            start_locn="Nelson, BC",
            date_time=start + timedelta(days=21),
            organizer_email="organizer@example.com, helper@example.com",
        ),
    ]
    populaire = Populaire(
        event_name="Spring Populaire",
        short_name="SprPop",
        distance="50 km, 100 km",
        date_time=start + timedelta(days=3, hours=2),
        start_locn="Jericho Beach, Vancouver",
        organizer_email="organizer@example.com",
        entry_form_url="https://randonneurs.bc.ca/organize/popform.pdf",
    )
    for event in brevets + [populaire]:
        event.registration_end = default_registration_end(event.date_time)
        db.add(event)
    db.flush()
    for i, (first, last) in enumerate(DEMO_RIDERS):
        email = f"{first}.{last}@example.com".lower()
        db.add(
            BrevetRider(
                brevet=brevets[0],
                email=email,
                first_name=first,
                last_name=last,
                bike_type="single",
                member_status=i % 3 != 2,
            )
        )
        if i % 2 == 0:
            db.add(
                PopulaireRider(
                    populaire=populaire,
                    email=email,
                    first_name=first,
                    last_name=last,
                    distance="100 km",
                )
            )
    print("Added demo events: 3 brevets and a populaire, with riders.")


def initialize(settings, demo=False, wrangler_email=None, wrangler_password=None) -> None:
    ensure_credentials(settings)
    settings = app_settings.load(settings)
    wranglers.configure_hasher(settings)
    migrate(settings)
    engine = get_engine(settings)
    try:
        with get_session_factory(engine)() as db, db.begin():
            ensure_keyed_rows(db, settings)
            ensure_wrangler(db, wrangler_email, wrangler_password)
            if demo:
                add_demo_events(db, club_now(settings))
    finally:
        engine.dispose()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="initialize_RandoPony_db", description=__doc__)
    parser.add_argument("config_uri", help="the ini file, e.g. production.ini")
    parser.add_argument("--demo", action="store_true", help="add a few current events with riders")
    parser.add_argument("--wrangler-email", help="email of the first wrangler, when there is none")
    args = parser.parse_args(argv)
    setup_logging(args.config_uri)
    settings = dict(get_appsettings(args.config_uri))
    try:
        initialize(settings, demo=args.demo, wrangler_email=args.wrangler_email)
    except (InitializeError, app_settings.ConfigurationError) as error:
        print(f"initialize_RandoPony_db: {error}", file=sys.stderr)
        return 2
    print(f"Database ready: {settings['sqlalchemy.url']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
