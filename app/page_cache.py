"""A per-process cache of public pages for visitors without a session.

Most traffic is riders reading event pages; rendering one with a hundred riders costs milliseconds
of ORM and template work, while checking whether anything changed costs one tiny query. A visitor
with a session (a flash message to show, a form's CSRF token, a logged-in wrangler) always gets a
freshly rendered page, so nothing personal is ever cached or shared.
"""

import logging
import sqlite3
import threading
import time

from sqlalchemy.exc import SQLAlchemyError

from .models.page_generation import TokenReader

log = logging.getLogger(__name__)

# Pages that depend on the clock (registration closing, "moved on") are re-rendered at least
# this often even when no data changed.
MAX_AGE = 60
MAX_ENTRIES = 2000
NOT_CACHED_PREFIXES = ("/admin", "/up", "/static", "/_")


class PageCache:
    def __init__(self, max_age=MAX_AGE, max_entries=MAX_ENTRIES):
        self.max_age = max_age
        self.max_entries = max_entries
        self.entries: dict[str, tuple] = {}
        self.lock = threading.Lock()

    def get(self, key, token):
        entry = self.entries.get(key)
        if entry is None:
            return None
        entry_token, expires, status, headers, body = entry
        if entry_token != token or expires < time.monotonic():
            return None
        return status, headers, body

    def put(self, key, token, response) -> None:
        with self.lock:
            if len(self.entries) >= self.max_entries:
                self.entries.clear()  # rare: a crawler walking every old URL
            headers = [(k, v) for k, v in response.headerlist if k.lower() != "set-cookie"]
            self.entries[key] = (
                token,
                time.monotonic() + self.max_age,
                response.status,
                headers,
                response.body,
            )


def cacheable(request, cookie_name) -> bool:
    return (
        request.method in ("GET", "HEAD")
        and cookie_name not in request.cookies
        and not request.path_info.startswith(NOT_CACHED_PREFIXES)
    )


def page_cache_tween_factory(handler, registry):
    cache = PageCache()
    read_token = TokenReader(registry["db_engine"])
    cookie_name = registry.settings.get("session.cookie_name", "randopony_session")

    def page_cache_tween(request):
        if not cacheable(request, cookie_name):
            return handler(request)
        try:
            token = read_token()
        except (SQLAlchemyError, sqlite3.Error):
            return handler(request)  # the view reports the database problem itself
        key = request.host + request.path_qs
        hit = cache.get(key, token)
        if hit is not None:
            status, headers, body = hit
            response = request.response.__class__(status=status, headerlist=list(headers))
            response.body = body if request.method == "GET" else b""
            return response
        response = handler(request)
        # Only complete answers without a session. A page that started one (an entry form with
        # its CSRF token) is not anonymous, and its cookie is only added after the tweens, by a
        # response callback: a callback still to run means the answer is not final.
        if (
            token is not None
            and response.status_int in (200, 404)
            and not request.response_callbacks
            and "Set-Cookie" not in response.headers
        ):
            cache.put(key, token, response)
        return response

    return page_cache_tween


def includeme(config):
    from pyramid.tweens import INGRESS

    config.add_tween("app.page_cache.page_cache_tween_factory", under=INGRESS)
