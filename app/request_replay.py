"""A write the host's router sends a second time is done once.

The router gives every request an id (X-Randopony-Request). When an app process dies while it
holds a write, the router cannot know whether the write was stored, so it sends the request
again, with the same id, to another process. Here each write that succeeds records its id, in the
same transaction as the write itself: a second try finds the record and gets the first try's
answer (its status and redirect) without running the view again. A first try that died never
committed, so it left no record and the second try does the work.

Every answer carries X-Randopony-Replay, which tells the router that this app can take writes
again; the router sends a write again only to apps that say so.
"""

import itertools
import logging
import re
from datetime import datetime, timedelta

from pyramid.response import Response
from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError

from .models import WRITE_METHODS, HandledRequest

log = logging.getLogger(__name__)

REQUEST_ID = "X-Randopony-Request"
REPLAY_HEADER = "X-Randopony-Replay"
ID = re.compile(r"[0-9a-f]{32}")
# A request is sent again within seconds; its record is kept far longer, then purged.
KEPT_FOR = timedelta(days=2)
PURGE_EVERY = 256


def earlier_answer(registry, key: str) -> HandledRequest | None:
    """The record of a committed first try, read outside the request's transaction (a write
    request's own transaction holds SQLite's write lock: see ask_membership_first)."""
    with registry["dbsession_factory"]() as db:
        return db.get(HandledRequest, key)


def answer_again(record: HandledRequest) -> Response:
    response = Response(status=record.status)
    if record.location:
        response.location = record.location
    response.headers[REPLAY_HEADER] = "ids"
    return response


def replay_tween_factory(handler, registry):
    counter = itertools.count(1)

    def replay_tween(request):
        key = request.headers.get(REQUEST_ID, "")
        if request.method not in WRITE_METHODS or not ID.fullmatch(key):
            response = handler(request)
            response.headers[REPLAY_HEADER] = "ids"
            return response
        record = earlier_answer(registry, key)
        if record is not None:
            log.info("request %s was sent again: answered as the first time", key)
            return answer_again(record)
        response = handler(request)
        response.headers[REPLAY_HEADER] = "ids"
        if request.exception is not None or not 200 <= response.status_int < 400:
            return response  # nothing was stored: a second try may do it all again
        try:
            with request.db.begin_nested():
                request.db.add(
                    HandledRequest(id=key, status=response.status_int, location=response.location)
                )
                if next(counter) % PURGE_EVERY == 0:
                    request.db.execute(
                        delete(HandledRequest).where(
                            HandledRequest.handled_at < datetime.now() - KEPT_FOR
                        )
                    )
        except IntegrityError:
            # The first try committed after this one looked: this one's writes must not stay.
            request.tm.doom()
            return answer_again(earlier_answer(registry, key))
        return response

    return replay_tween


def includeme(config):
    from pyramid.tweens import EXCVIEW

    # Inside the request's transaction (under pyramid_tm), so the record commits with the write.
    config.add_tween(
        "app.request_replay.replay_tween_factory", under="pyramid_tm.tm_tween_factory", over=EXCVIEW
    )
