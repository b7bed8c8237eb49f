"""Celery tasks. Each is idempotent: running one twice has the effect of running it once."""

import logging
import smtplib

from celery.signals import worker_ready
from sqlalchemy.exc import SQLAlchemyError

from . import mail, rider_lists
from .models.site_config import get_email
from .worker import celery, session_factory, state

log = logging.getLogger(__name__)


@celery.task(
    bind=True,
    autoretry_for=(smtplib.SMTPException, OSError),
    retry_backoff=2,
    retry_backoff_max=300,
    max_retries=10,
)
def send_email(self, email_id: int) -> bool:
    factory = session_factory()
    with factory() as db:
        sender = get_email(db, "from_randopony")
    return mail.send_outbox_email(factory, state["settings"], email_id, sender)


@celery.task
def update_rider_list(kind: str, event_id: int) -> None:
    with session_factory()() as db:
        event = db.get(rider_lists.KINDS[kind], event_id)
        if event is None:
            log.info("%s %s is gone; no rider list to write", kind, event_id)
            return
        rider_lists.write_rider_list(state["settings"], event)


@worker_ready.connect
def send_unsent_email(**_kwargs):
    """Email whose task never reached the broker (or died with a worker) goes out now."""
    try:
        ids = mail.unsent_email_ids(session_factory())
    except SQLAlchemyError as error:
        log.error("could not look for unsent email (is the database initialised?): %s", error)
        return
    for email_id in ids:
        send_email.delay(email_id)
    if ids:
        log.info("queued %d unsent outbox emails", len(ids))
