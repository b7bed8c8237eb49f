"""Putting email in the outbox: the row is written in the request's transaction, with the change
that causes it, and its sending is queued for after commit (app/worker.py's `enqueue`), so a
rolled-back request leaves no email and queues nothing. The worker sends it (app/mail.py)."""

from .models import OutboundEmail
from .tasks import send_email


def queue_email(request, to: list[str], subject: str, body: str, reply_to=None) -> OutboundEmail:
    """Add an email to the outbox in the request's transaction; it is sent after commit."""
    email = OutboundEmail(
        to_addrs=", ".join(to),
        reply_to=", ".join(reply_to) if reply_to else None,
        subject=subject,
        body=body,
    )
    request.db.add(email)
    request.db.flush()
    request.enqueue(send_email, email.id)
    return email
