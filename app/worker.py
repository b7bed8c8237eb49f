"""The celery application. Web processes queue tasks; `randopony_worker <ini>` runs them.

The broker defaults to kombu's SQLAlchemy transport on a SQLite file beside the ini, so nothing
else has to run.
"""

import logging
import sqlite3
import time

from celery import Celery
from kombu.transport import sqlalchemy as kombu_sqlalchemy

from . import standby

log = logging.getLogger(__name__)

celery = Celery("randopony", include=["app.tasks"])
celery.conf.update(
    task_ignore_result=True,
    task_acks_late=True,  # a task lost with its worker runs again; tasks are idempotent
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
    task_serializer="json",
    accept_content=["json"],
    # kombu hands every transport option to create_engine: a SQLite busy timeout is one.
    broker_transport_options={"connect_args": {"timeout": 30}},
)

# What the tasks need from the ini: set by configure().
state: dict = {}


def configure(settings: dict) -> None:
    """Point celery at the ini's broker and remember the settings for the tasks."""
    broker_url = settings.get("celery.broker_url", "sqla+sqlite:///celery.sqlite")
    if celery.conf.broker_url != broker_url:
        _forget_broker_connections()
    celery.conf.broker_url = broker_url
    celery.conf.worker_concurrency = int(settings.get("celery.concurrency", 2))
    # The transport polls its table once a second by default, so a sign-up's email would wait
    # up to a second. kombu reads the interval from the Transport class, not from its options.
    kombu_sqlalchemy.Transport.polling_interval = float(
        settings.get("celery.polling_interval", 0.05)
    )
    if not standby.waiting(settings):  # in standby the broker's file is not ours to touch yet
        _use_wal(broker_url)
    state.clear()
    state["settings"] = settings


def stop_promptly() -> None:
    """Make a warm shutdown start at once. Celery's blocking loop (the one a polling transport
    gets) waits up to 2 s in drain_events before it looks for a shutdown request, which adds
    seconds to every deploy and promotion. The wait is cut into short slices, and a slice that
    ends with a shutdown requested ends the wait."""
    from celery.worker import state as worker_state

    drain = kombu_sqlalchemy.Transport.drain_events
    if getattr(drain, "stops_promptly", False):
        return

    def drain_events(self, connection, timeout=None):
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                return drain(self, connection, timeout=0.2)
            except TimeoutError:
                stopping = (worker_state.should_stop, worker_state.should_terminate)
                if stopping != (None, None):
                    raise
                if deadline is not None and time.monotonic() >= deadline:
                    raise

    drain_events.stops_promptly = True
    kombu_sqlalchemy.Transport.drain_events = drain_events


def _forget_broker_connections() -> None:
    """Celery caches its connection and producer pools for the first broker it used and has no
    public way to re-point a configured app; one process that builds apps for several inis
    (the tests, a release tool) must not queue into an earlier ini's broker."""
    if celery._pool is not None:
        celery._pool.force_close_all()
    celery._pool = None
    celery.amqp._producer_pool = None


def _use_wal(broker_url: str) -> None:
    """WAL on the broker's SQLite file, so web threads queueing and the worker polling do not
    block each other. The journal mode is stored in the file: once is enough."""
    prefix = "sqla+sqlite:///"
    if not broker_url.startswith(prefix) or broker_url == prefix:
        return
    connection = sqlite3.connect(broker_url[len(prefix) :], timeout=30)
    try:
        connection.execute("PRAGMA journal_mode=WAL")
    finally:
        connection.close()


def session_factory():
    """The worker's own database sessions (created on first use)."""
    if "session_factory" not in state:
        from .models import get_engine, get_session_factory

        state["session_factory"] = get_session_factory(get_engine(state["settings"]))
    return state["session_factory"]


def enqueue(request, task, *args) -> None:
    """Queue a task once the request's transaction has committed; a rolled-back request
    queues nothing. If the broker cannot be reached the work is not lost: unsent outbox
    email is queued again when a worker starts."""

    def after_commit(success: bool) -> None:
        if not success:
            return
        try:
            task.delay(*args)
        except Exception:
            log.exception("could not queue %s%r; a worker restart will pick it up", task.name, args)

    request.tm.get().addAfterCommitHook(after_commit)


def includeme(config):
    configure(config.get_settings())
    config.add_request_method(enqueue, "enqueue")
