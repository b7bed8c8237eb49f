"""A per-process cache of public pages, for every visitor.

Most traffic is riders reading event pages; rendering one with a hundred riders costs milliseconds
of ORM and template work, while checking whether anything changed costs one tiny query (the
page-generation token, app/models/page_generation.py). A page is kept with holes where a
visitor's own parts go (flash messages, a wrangler's Admin link, a form's CSRF token:
app/visitor_parts.py) and every answer fills them for its visitor, so a visitor with a session
is served from the same kept page as one without. Nothing of one visitor is kept: a page whose
rendering looked at the session anywhere but in those holes is not kept at all.
"""

import logging
import sqlite3
import threading
import time
from dataclasses import dataclass

from pyramid.response import Response
from sqlalchemy.exc import SQLAlchemyError

from . import visitor_parts
from .models.quick_reads import QuickReads

log = logging.getLogger(__name__)

# Pages that depend on the clock (registration closing, "moved on") are re-rendered at least
# this often even when no data changed.
MAX_AGE = 60
MAX_ENTRIES = 2000
NOT_CACHED_PREFIXES = ("/admin", "/up", "/static", "/_")
KEPT_STATUSES = (200, 404)
NOT_KEPT_HEADERS = frozenset({"set-cookie", "content-length"})


@dataclass(frozen=True)
class Page:
    token: str
    expires: float
    status: str
    headers: tuple
    charset: str
    # visitor_parts.Holes.split: the page's own bytes with the names of the holes between them.
    pieces: tuple
    # The whole page for a visitor without a session, when that needs no session either.
    without_session: bytes | None


class PageCache:
    def __init__(self, max_age=MAX_AGE, max_entries=MAX_ENTRIES):
        self.max_age = max_age
        self.max_entries = max_entries
        self.entries: dict[str, Page] = {}
        self.lock = threading.Lock()

    def get(self, key, token) -> Page | None:
        page = self.entries.get(key)
        if page is None or page.token != token or page.expires < time.monotonic():
            return None
        return page

    def put(self, key, token, response, pieces) -> Page:
        charset = response.charset or "utf-8"
        page = Page(
            token,
            time.monotonic() + self.max_age,
            response.status,
            tuple((k, v) for k, v in response.headerlist if k.lower() not in NOT_KEPT_HEADERS),
            charset,
            pieces,
            visitor_parts.fill_without_session(pieces, charset),
        )
        with self.lock:
            if len(self.entries) >= self.max_entries:
                self.entries.clear()  # rare: a crawler walking every old URL
            self.entries[key] = page
        return page


def cacheable(request) -> bool:
    return request.method in ("GET", "HEAD") and not request.path_info.startswith(
        NOT_CACHED_PREFIXES
    )


def keepable(request, response, token) -> bool:
    """A complete answer that is the same for every visitor. The session is read lazily
    (request.session is reified on first use), so a rendering that never looked at it leaves
    no trace of it; its cookie is added after the tweens, by a response callback."""
    return (
        token is not None
        and response.status_int in KEPT_STATUSES
        and "session" not in request.__dict__
        and not request.response_callbacks
        and "Set-Cookie" not in response.headers
    )


def answer(request, page: Page, cookie_name: str) -> Response:
    if page.without_session is not None and cookie_name not in request.cookies:
        body = page.without_session
    else:
        body = visitor_parts.fill(page.pieces, request, page.charset)
    response = Response(status=page.status, headerlist=list(page.headers))
    response.body = body if request.method == "GET" else b""
    return response


def page_cache_tween_factory(handler, registry):
    cache = PageCache()
    reads = registry["quick_reads"]
    holes = visitor_parts.Holes()
    cookie_name = registry.settings.get("session.cookie_name", "randopony_session")

    def page_cache_tween(request):
        if not cacheable(request):
            return handler(request)
        try:
            token = reads.page_token()
        except (SQLAlchemyError, sqlite3.Error):
            return handler(request)  # the view reports the database problem itself
        key = request.url  # scheme and host too: the page's links are absolute
        page = cache.get(key, token)
        if page is not None:
            return answer(request, page, cookie_name)

        # Read before the view opens its transaction, the token is never newer than what the
        # view reads: a write committed in between changes the token, so it cannot be kept
        # under the new one.
        request.page_holes = holes
        try:
            response = handler(request)
        finally:
            request.page_holes = None
        if response.content_type != "text/html":
            if keepable(request, response, token):
                cache.put(key, token, response, (response.body,))
            return response
        pieces = holes.split(response.body)
        if keepable(request, response, token):
            return answer(request, cache.put(key, token, response, pieces), cookie_name)
        if len(pieces) > 1:
            response.body = visitor_parts.fill(pieces, request, response.charset or "utf-8")
        return response

    return page_cache_tween


def includeme(config):
    from pyramid.tweens import INGRESS

    # Also for the visitor parts filled here: a wrangler's session generation (visitor_parts.py).
    config.registry["quick_reads"] = QuickReads(config.registry["db_engine"])
    config.add_tween("app.page_cache.page_cache_tween_factory", under=INGRESS)
