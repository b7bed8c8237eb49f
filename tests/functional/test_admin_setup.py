"""The per-event setup actions: rider list, organizer email, webmaster email, and 1-2-3."""

from pathlib import Path

import pytest
from sqlalchemy import delete, select

from app.models import EmailAddress, OutboundEmail
from tests.factories import make_brevet, make_brevet_rider, make_populaire

WEBMASTER = "webmaster@example.com"  # initialize.club_webmaster in testing.ini


def outbox(fresh):
    return fresh().scalars(select(OutboundEmail).order_by(OutboundEmail.id)).all()


def rider_list_files(app_settings, event):
    folder = Path(app_settings["rider_lists_dir"])
    return sorted(p.name for p in folder.glob(f"{event.uuid}.*"))


def press(admin, event_page, action):
    """Press a setup button on the admin event page; returns the page it comes back to."""
    page = admin.get(event_page)
    form = next(f for f in page.forms.values() if f.action.endswith(f"/setup/{action}"))
    response = form.submit()
    assert response.location == "http://randopony.localhost" + event_page
    return response.follow()


def flashes(page, queue):
    return [p.text for p in page.html.select(f"p.flash.{queue}")]


@pytest.fixture
def brevet(db):
    brevet = make_brevet(db, organizer_email="org@example.com, helper@example.com")
    make_brevet_rider(db, brevet)
    db.commit()
    return brevet


@pytest.fixture
def brevet_page(brevet):
    return f"/admin/brevets/{brevet.id}/"


def test_create_the_rider_list(admin, app_settings, brevet, brevet_page, fresh):
    assert rider_list_files(app_settings, brevet) == []
    page = press(admin, brevet_page, "rider-list")
    assert rider_list_files(app_settings, brevet) == [f"{brevet.uuid}.csv", f"{brevet.uuid}.xlsx"]
    csv = (Path(app_settings["rider_lists_dir"]) / f"{brevet.uuid}.csv").read_text()
    assert "Merckx,Eddy,rider@example.com" in csv
    [message] = flashes(page, "success")
    assert f"/rider_list/{brevet.uuid}.xlsx" in message
    assert f"/rider_list/{brevet.uuid}.csv" in message
    assert outbox(fresh) == []


def test_a_rider_s_formula_is_text_in_the_rider_lists(admin, app_settings, db, fresh):
    """A comment typed as a spreadsheet formula must not run when the organizer opens the list."""
    import openpyxl

    brevet = make_brevet(db, organizer_email="org@example.com")
    make_brevet_rider(db, brevet, comment='=HYPERLINK("http://evil.example/","click")')
    db.commit()
    press(admin, f"/admin/brevets/{brevet.id}/", "rider-list")
    folder = Path(app_settings["rider_lists_dir"])
    sheet = openpyxl.load_workbook(folder / f"{brevet.uuid}.xlsx").active
    [cell] = [c for row in sheet.iter_rows() for c in row if "HYPERLINK" in str(c.value)]
    assert cell.data_type == "s" and cell.value.startswith("=HYPERLINK")
    csv = (folder / f"{brevet.uuid}.csv").read_text()
    assert """'=HYPERLINK(""http://evil.example/""" "" in csv


def test_email_the_organizer_the_event_urls(admin, brevet, brevet_page, fresh):
    page = press(admin, brevet_page, "email-organizer")
    [email] = outbox(fresh)
    assert email.recipients == ["org@example.com", "helper@example.com"]
    assert email.reply_to == "pony-admin@example.com"
    assert brevet.title in email.subject
    base = "http://randopony.localhost/brevets/LM/200/" + brevet.url_date
    assert f"{base}\n" in email.body
    assert f"{base}/rider_emails/{brevet.uuid}" in email.body
    assert f"{base}/rider_list/{brevet.uuid}.xlsx" in email.body
    assert f"{base}/rider_list/{brevet.uuid}.csv" in email.body
    assert "org@example.com, helper@example.com" in flashes(page, "success")[0]


def test_email_the_club_webmaster_the_new_page(admin, brevet, brevet_page, fresh):
    page = press(admin, brevet_page, "email-webmaster")
    [email] = outbox(fresh)
    assert email.recipients == [WEBMASTER]
    assert "http://randopony.localhost/brevets/LM/200/" + brevet.url_date in email.body
    # The webmaster gets the public page only, not the organizers' secret links.
    assert brevet.uuid not in email.body
    assert WEBMASTER in flashes(page, "success")[0]


def test_setup_123_does_all_three(admin, app_settings, brevet, brevet_page, fresh):
    page = press(admin, brevet_page, "1-2-3")
    assert len(rider_list_files(app_settings, brevet)) == 2
    assert [e.recipients for e in outbox(fresh)] == [
        ["org@example.com", "helper@example.com"],
        [WEBMASTER],
    ]
    assert len(flashes(page, "success")) == 3
    assert flashes(page, "error") == []


def test_setup_123_stops_at_a_missing_webmaster_address(
    admin, db, app_settings, brevet, brevet_page, fresh
):
    db.execute(delete(EmailAddress).where(EmailAddress.key == "club_webmaster"))
    db.commit()
    page = press(admin, brevet_page, "1-2-3")
    # What succeeded is kept...
    assert len(rider_list_files(app_settings, brevet)) == 2
    assert [e.recipients for e in outbox(fresh)] == [["org@example.com", "helper@example.com"]]
    assert len(flashes(page, "success")) == 2
    # ...and the failure is said plainly.
    [error] = flashes(page, "error")
    assert "club_webmaster" in error and "initialize_RandoPony_db" in error


def test_setup_123_stops_at_an_event_without_organizer_emails(admin, db, app_settings, fresh):
    populaire = make_populaire(db, organizer_email=" , ")
    db.commit()
    page = press(admin, f"/admin/populaires/{populaire.id}/", "1-2-3")
    assert len(rider_list_files(app_settings, populaire)) == 2
    # Stopped: neither the organizer nor the webmaster was emailed.
    assert outbox(fresh) == []
    [error] = flashes(page, "error")
    assert "no organizer email address" in error
    [info] = flashes(page, "info")
    assert "Email the club webmaster the new page" in info


def test_setup_123_stops_when_the_rider_list_cannot_be_written(
    admin, app_settings, brevet, brevet_page, fresh
):
    # A file where the rider lists folder should be.
    Path(app_settings["rider_lists_dir"]).write_text("not a folder")
    page = press(admin, brevet_page, "1-2-3")
    assert outbox(fresh) == []
    [error] = flashes(page, "error")
    assert "Could not write the rider list" in error


def test_populaire_setup_emails_the_populaire_urls(admin, db, fresh):
    populaire = make_populaire(db, short_name="SprPop")
    db.commit()
    press(admin, f"/admin/populaires/{populaire.id}/", "email-organizer")
    [email] = outbox(fresh)
    assert email.recipients == ["pop-organizer@example.com"]
    assert f"/populaires/SprPop/rider_emails/{populaire.uuid}" in email.body


def test_setup_is_never_a_get(admin, app_settings, brevet, brevet_page, fresh):
    for action in ("rider-list", "email-organizer", "email-webmaster", "1-2-3"):
        admin.get(f"{brevet_page}setup/{action}", status=405)
    assert outbox(fresh) == []
    assert rider_list_files(app_settings, brevet) == []


def test_setup_without_csrf_token_does_nothing(admin, app_settings, brevet, brevet_page, fresh):
    admin.post(f"{brevet_page}setup/1-2-3", status=400)
    assert outbox(fresh) == []
    assert rider_list_files(app_settings, brevet) == []


def test_unknown_setup_action_is_404(admin, brevet_page, csrf_token):
    admin.post(f"{brevet_page}setup/launch-rockets", {"csrf_token": csrf_token()}, status=404)


def test_a_rider_row_a_spreadsheet_cannot_hold_breaks_no_list(admin, db, app_settings, fresh):
    """A comment with a vertical tab, stored before the form refused control characters: both
    lists are still written (the XLSX shows U+FFFD for it), and Setup 1-2-3 goes through."""
    brevet = make_brevet(db, organizer_email="org@example.com")
    make_brevet_rider(db, brevet, comment="bring\x0bcake")
    db.commit()
    page = press(admin, f"/admin/brevets/{brevet.id}/", "1-2-3")
    assert flashes(page, "error") == []
    assert rider_list_files(app_settings, brevet) == [f"{brevet.uuid}.csv", f"{brevet.uuid}.xlsx"]
    from openpyxl import load_workbook

    sheet = load_workbook(Path(app_settings["rider_lists_dir"]) / f"{brevet.uuid}.xlsx").active
    assert "bring\ufffdcake" in [cell.value for cell in sheet[2]]
