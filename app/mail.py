"""Sending the outbox's email over SMTP, for the worker's send_email task (app/tasks.py): a row
is claimed before it is sent, so two workers do not both send it, and on staging mail goes only
to the domains mail.only_to_domains allows. Email gets into the outbox through app/outbox.py."""

import logging
import smtplib
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import formatdate, getaddresses, make_msgid

from sqlalchemy import select, update

from .models import OutboundEmail
from .settings import as_bool

log = logging.getLogger(__name__)

# A claim older than this belongs to a worker that died mid-send.
STALE_CLAIM = timedelta(minutes=10)
# The headers smtplib's send_message takes its recipients from.
RECIPIENT_HEADERS = ("To", "Cc", "Bcc", "Resent-To", "Resent-Cc", "Resent-Bcc")


class RecipientsWithheld(Exception):
    """The message has recipients outside mail.only_to_domains (staging): it is not sent."""

    def __init__(self, recipients: list[str], allowed: list[str]):
        super().__init__(f"recipients outside {', '.join(allowed)}: {', '.join(recipients)}")
        self.recipients = recipients


def build_message(email: OutboundEmail, sender: str, domain: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = email.to_addrs
    if email.reply_to:
        message["Reply-To"] = email.reply_to
    message["Subject"] = email.subject
    message["Date"] = formatdate(localtime=True)
    # One Message-ID per outbox row: should a send ever repeat, mail clients see one message.
    message["Message-ID"] = make_msgid(idstring=f"outbox-{email.id}", domain=domain)
    message.set_content(email.body)
    return message


def allowed_domains(settings: dict) -> list[str]:
    """`mail.only_to_domains` (staging.ini; never in production.ini): the only domains mail may
    go to (and their subdomains), space or comma separated. Absent or empty: no restriction."""
    value = settings.get("mail.only_to_domains") or ""
    return [d.lower() for d in value.replace(",", " ").split()]


def recipients_outside(settings: dict, message: EmailMessage) -> list[str]:
    """Recipients of the message outside the allowed domains (all of them count: To, Cc, Bcc);
    an address without a domain is outside."""
    domains = allowed_domains(settings)
    if not domains:
        return []
    addresses = [
        address
        for _name, address in getaddresses(
            [str(value) for header in RECIPIENT_HEADERS for value in message.get_all(header, [])]
        )
    ]
    return [a for a in addresses if not _in_domains(a, domains)]


def _in_domains(address: str, domains: list[str]) -> bool:
    local, at, domain = address.rpartition("@")
    domain = domain.lower()
    return bool(at and local) and any(domain == d or domain.endswith("." + d) for d in domains)


def smtp_send(settings: dict, message: EmailMessage) -> None:
    """Raises RecipientsWithheld, before connecting, for a recipient outside
    mail.only_to_domains."""
    outside = recipients_outside(settings, message)
    if outside:
        raise RecipientsWithheld(outside, allowed_domains(settings))
    host = settings.get("smtp.host", "localhost")
    port = int(settings.get("smtp.port", 25))
    with smtplib.SMTP(host, port, timeout=30) as smtp:
        if as_bool(settings.get("smtp.starttls", False)):
            smtp.starttls()
        if settings.get("smtp.username"):
            smtp.login(settings["smtp.username"], settings.get("smtp.password", ""))
        smtp.send_message(message)


def send_outbox_email(session_factory, settings: dict, email_id: int, sender: str) -> bool:
    """Send one outbox email unless it was sent already. Returns whether this call sent it."""
    now = datetime.now()
    with session_factory() as db, db.begin():
        claimed = db.execute(
            update(OutboundEmail)
            .where(
                OutboundEmail.id == email_id,
                OutboundEmail.sent_at.is_(None),
                (OutboundEmail.claimed_at.is_(None))
                | (OutboundEmail.claimed_at < now - STALE_CLAIM),
            )
            .values(claimed_at=now, attempts=OutboundEmail.attempts + 1)
        ).rowcount
        if not claimed:
            log.info("outbox email %s already sent or being sent; nothing to do", email_id)
            return False
        email = db.get(OutboundEmail, email_id)
        message = build_message(email, sender, settings.get("mail.domain", "randopony.localhost"))
    try:
        smtp_send(settings, message)
    except RecipientsWithheld as withheld:
        # Handled, not failed: a retry would be withheld again. sent_at closes the row so no
        # worker picks it up again; last_error says it never left.
        log.warning("outbox email %s not sent: %s", email_id, withheld)
        with session_factory() as db, db.begin():
            db.execute(
                update(OutboundEmail)
                .where(OutboundEmail.id == email_id)
                .values(sent_at=datetime.now(), last_error=f"withheld: {withheld}")
            )
        return False
    except Exception as error:
        with session_factory() as db, db.begin():
            db.execute(
                update(OutboundEmail)
                .where(OutboundEmail.id == email_id)
                .values(claimed_at=None, last_error=f"{type(error).__name__}: {error}")
            )
        raise
    with session_factory() as db, db.begin():
        db.execute(
            update(OutboundEmail)
            .where(OutboundEmail.id == email_id)
            .values(sent_at=datetime.now(), last_error=None)
        )
    log.info("sent outbox email %s to %s", email_id, message["To"])
    return True


def unsent_email_ids(session_factory) -> list[int]:
    with session_factory() as db:
        return list(
            db.scalars(
                select(OutboundEmail.id)
                .where(OutboundEmail.sent_at.is_(None))
                .order_by(OutboundEmail.id)
            )
        )
