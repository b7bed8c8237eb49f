"""Staging's second guard: with `mail.only_to_domains` set (staging.ini; never production.ini), a
message with any recipient outside those domains never reaches the SMTP server. It is logged and
closed as handled, so the task does not retry it. Real SMTP server (aiosmtpd), real database."""

import logging
from email.message import EmailMessage

import pytest
from pyramid.paster import get_appsettings
from sqlalchemy import select

from app import mail, sanitize
from app.models import OutboundEmail, get_engine, get_session_factory
from tests.conftest import ROOT, wait_until

SINK = "sink.invalid"
SENDER = "randopony@sink.invalid"


@pytest.fixture
def guarded(app_settings, smtp_server):
    """Settings that send to the test's SMTP server and only to the sink, and a session factory."""
    port, mailbox = smtp_server
    settings = {**app_settings, "smtp.port": str(port), "mail.only_to_domains": SINK}
    engine = get_engine(settings)
    yield settings, get_session_factory(engine), mailbox
    engine.dispose()


def queue(db, to_addrs, subject="Hello") -> int:
    email = OutboundEmail(to_addrs=to_addrs, subject=subject, body="hi")
    db.add(email)
    db.commit()
    return email.id


def test_mail_to_the_sink_arrives_and_mail_to_a_real_address_is_withheld(guarded, db, caplog):
    settings, factory, mailbox = guarded
    to_sink = queue(db, f"ada.example.org.1234567890@{SINK}", "To the sink")
    to_person = queue(db, "ada@gmail.com", "To a person")
    mixed = queue(db, f"org@{SINK}, Real Organizer <org@club.example.ca>", "Mixed")

    caplog.set_level(logging.INFO, logger="app.mail")
    assert mail.send_outbox_email(factory, settings, to_sink, SENDER) is True
    assert mail.send_outbox_email(factory, settings, to_person, SENDER) is False
    assert mail.send_outbox_email(factory, settings, mixed, SENDER) is False

    [(rcpt_tos, message, _)] = mailbox.wait_for(1)
    assert rcpt_tos == [f"ada.example.org.1234567890@{SINK}"]
    assert message["Subject"] == "To the sink"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        f"outbox email {to_person} not sent: recipients outside {SINK}: ada@gmail.com",
        f"outbox email {mixed} not sent: recipients outside {SINK}: org@club.example.ca",
    ]

    # Handled: closed like a sent email, so nothing retries it or sends it at a worker's start.
    db.expire_all()
    rows = {e.id: e for e in db.scalars(select(OutboundEmail))}
    assert rows[to_person].sent_at is not None
    assert rows[to_person].last_error.startswith("withheld: recipients outside")
    assert rows[to_person].attempts == 1
    assert mail.unsent_email_ids(factory) == []
    assert mail.send_outbox_email(factory, settings, to_person, SENDER) is False
    # Sending is synchronous here: the SMTP server had every message before the calls returned.
    assert len(mailbox.messages) == 1


def test_cc_and_bcc_count_and_nothing_is_sent(guarded):
    settings, _factory, mailbox = guarded
    for header in ("Cc", "Bcc"):
        message = EmailMessage()
        message["From"], message["To"] = SENDER, f"ok@{SINK}"
        message[header] = "someone@example.ca"
        message["Subject"] = "Copied"
        message.set_content("hi")
        with pytest.raises(mail.RecipientsWithheld) as withheld:
            mail.smtp_send(settings, message)
        assert withheld.value.recipients == ["someone@example.ca"]
    assert mailbox.messages == []  # refused before anything was sent (synchronously)


def test_subdomains_of_an_allowed_domain_pass_and_lookalikes_do_not(guarded):
    settings, _factory, _mailbox = guarded
    message = EmailMessage()
    message["To"] = ", ".join(
        [f"a@lab.{SINK}", f"b@{SINK.upper()}", f"c@{SINK}.evil.com", f"d@not{SINK}", "root"]
    )
    assert mail.recipients_outside(settings, message) == [
        f"c@{SINK}.evil.com",
        f"d@not{SINK}",
        "root",
    ]


def test_without_the_setting_mail_goes_to_anyone(app_settings, smtp_server, db):
    """Production: production.ini has no mail.only_to_domains."""
    port, mailbox = smtp_server
    settings = {**app_settings, "smtp.port": str(port)}
    assert "mail.only_to_domains" not in settings
    engine = get_engine(settings)
    email_id = queue(db, "ada@gmail.com")
    assert mail.send_outbox_email(get_session_factory(engine), settings, email_id, SENDER)
    engine.dispose()
    [(rcpt_tos, _, _)] = mailbox.wait_for(1)
    assert rcpt_tos == ["ada@gmail.com"]


def test_staging_ini_guards_mail_and_production_ini_does_not():
    staging = mail.allowed_domains(get_appsettings(str(ROOT / "staging.ini")))
    assert staging[0] == sanitize.DEFAULT_SINK_DOMAIN  # where sync_staging sends addresses
    assert all(sanitize.is_reserved_domain(domain) for domain in staging)
    assert mail.allowed_domains(get_appsettings(str(ROOT / "production.ini"))) == []


def test_the_worker_withholds_and_does_not_retry(app_settings, db, smtp_server, start_worker):
    """End to end: the ini's setting reaches the worker; the sink's email arrives, the other is
    logged as not sent and never retried."""
    port, mailbox = smtp_server
    sink_id = queue(db, f"rider@{SINK}", "To the sink")
    person_id = queue(db, "rider@gmail.com", "To a person")
    worker = start_worker(
        {**app_settings, "smtp.port": str(port), "mail.only_to_domains": f"{SINK} example.org"}
    )
    [(rcpt_tos, _, _)] = mailbox.wait_for(1)
    assert rcpt_tos == [f"rider@{SINK}"]
    assert worker.wait_for_output(
        f"outbox email {person_id} not sent: recipients outside {SINK}, example.org: "
        "rider@gmail.com"
    ), worker.output()
    assert worker.wait_for_output(f"sent outbox email {sink_id}"), worker.output()
    assert "Retry in" not in worker.output()

    def withheld() -> bool:
        # A new read transaction: the worker commits after it logs, and the test's session
        # would otherwise keep its SQLite snapshot from before.
        db.rollback()
        db.expire_all()
        return (db.get(OutboundEmail, person_id).last_error or "").startswith("withheld")

    wait_until(withheld, "the withheld email's last_error in the outbox")
    # The worker has dealt with both emails (logged above), so the mailbox is complete.
    assert len(mailbox.messages) == 1
