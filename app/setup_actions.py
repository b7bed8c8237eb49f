"""What a wrangler does once an event is entered: create its rider list, email the organizer the
event's links, email the club webmaster the new page; or all three in order ("setup 1-2-3").

Each action returns a Result instead of raising for the failures a wrangler can fix (missing
site configuration, an event without organizer emails, an unwritable rider list folder), so
the page can say what was done and what was not, and what was done is kept.
"""

from dataclasses import dataclass

from . import rider_lists
from .models.site_config import MissingConfiguration, get_email
from .outbox import queue_email
from .signup import mail_urls

RIDER_LIST = "Create the rider list"
ORGANIZER = "Email the organizer the event's URLs"
WEBMASTER = "Email the club webmaster the new page"


@dataclass(frozen=True)
class Result:
    step: str
    ok: bool
    message: str


def _reply_to(request) -> list[str] | None:
    """Replies go to the RandoPony admin when one is set up; the email is useful without."""
    try:
        return [get_email(request.db, "admin_email")]
    except MissingConfiguration:
        return None


def create_rider_list(request, event) -> Result:
    step = RIDER_LIST
    try:
        rider_lists.write_rider_list(request.registry.settings, event)
    except OSError as error:
        return Result(step, False, f"Could not write the rider list for {event.title}: {error}")
    urls = mail_urls(request, event)
    return Result(
        step,
        True,
        f"Rider list for {event.title} created: {urls['rider_list_xlsx']} "
        f"(spreadsheet) and {urls['rider_list_csv']} (CSV).",
    )


def organizer_email_body(event, urls) -> str:
    return (
        f"The RandoPony pre-registration page for {event.long_title} ({event.title}) is ready:\n"
        f"\n  {urls['page']}\n\n"
        "Please check the details there and reply if anything needs changing.\n\n"
        "These links are for organizers only; please keep them private:\n"
        f"  Riders' email addresses: {urls['rider_emails']}\n"
        f"  Rider list (spreadsheet): {urls['rider_list_xlsx']}\n"
        f"  Rider list (CSV): {urls['rider_list_csv']}\n\n"
        "You will get an email each time a rider pre-registers.\n\n"
        "The RandoPony\n"
    )


def email_organizer(request, event) -> Result:
    step = ORGANIZER
    recipients = event.organizer_emails
    if not recipients:
        return Result(step, False, f"{event.title} has no organizer email address; edit it first.")
    urls = mail_urls(request, event)
    queue_email(
        request,
        to=recipients,
        reply_to=_reply_to(request),
        subject=f"RandoPony pre-registration page for {event.title}",
        body=organizer_email_body(event, urls),
    )
    return Result(step, True, f"Email with the event's URLs queued for {', '.join(recipients)}.")


def webmaster_email_body(event, urls) -> str:
    return (
        f"There is a new RandoPony pre-registration page for {event.long_title} "
        f"on {event.date_time:%A %d %B %Y}:\n"
        f"\n  {urls['page']}\n\n"
        "Please link to it from the club calendar.\n\n"
        "The RandoPony\n"
    )


def email_webmaster(request, event) -> Result:
    step = WEBMASTER
    try:
        webmaster = get_email(request.db, "club_webmaster")
    except MissingConfiguration as error:
        return Result(step, False, f"Could not email the club webmaster: {error}.")
    urls = mail_urls(request, event)
    queue_email(
        request,
        to=[webmaster],
        reply_to=_reply_to(request),
        subject=f"New RandoPony page for {event.title}",
        body=webmaster_email_body(event, urls),
    )
    return Result(step, True, f"Email with the event page queued for {webmaster}.")


STEPS = (create_rider_list, email_organizer, email_webmaster)
STEP_NAMES = (RIDER_LIST, ORGANIZER, WEBMASTER)


def setup_123(request, event) -> list[Result]:
    """The three steps in order, stopping at the first that fails."""
    results = []
    for step in STEPS:
        result = step(request, event)
        results.append(result)
        if not result.ok:
            break
    return results


# The {action} part of the admin setup URLs.
ACTIONS = {
    "rider-list": create_rider_list,
    "email-organizer": email_organizer,
    "email-webmaster": email_webmaster,
    "1-2-3": setup_123,
}


def run(request, event, action: str) -> tuple[list[Result], list[str]]:
    """Run the named action: its results, and the names of the 1-2-3 steps a failure left
    undone (always a list of results, so callers treat one step like three)."""
    outcome = ACTIONS[action](request, event)
    if action != "1-2-3":
        return [outcome], []
    return outcome, list(STEP_NAMES[len(outcome) :])
