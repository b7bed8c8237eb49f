"""Wranglers (club admins) log in with email and password; the session remembers who they are.

A session is good while its wrangler's session generation is the one it was opened in (logging
out or changing the password raises it, which ends every session of that wrangler, in any
browser) and for at most `session.max_lifetime` seconds after logging in, whatever the activity.
"""

import time

from pyramid.authorization import ACLHelper, Allow, Authenticated
from pyramid.csrf import new_csrf_token

from .login_throttle import Policy
from .models import Wrangler, wranglers

ADMIN = "admin"
MAX_LIFETIME = 12 * 3600


class RootFactory:
    __acl__ = [(Allow, Authenticated, ADMIN)]

    def __init__(self, request):
        self.request = request


def may_be_logged_in(session) -> bool:
    """False for the sessions of visitors who never logged in (a flash message, a form's CSRF
    token): no need to read any wrangler from the database for them."""
    return session.get("wrangler_id") is not None


class SessionSecurityPolicy:
    def __init__(self, max_lifetime: int = MAX_LIFETIME):
        self.max_lifetime = max_lifetime

    def current_login(self, session, session_generation) -> int | None:
        """The id of the wrangler this session is a good login of, or None.
        `session_generation(wrangler_id)` reads that wrangler's (None: no such wrangler)."""
        if not may_be_logged_in(session):
            return None
        logged_in_at = session.get("logged_in_at")
        # Sessions from before generations and lifetimes carry neither: they end too.
        if not isinstance(logged_in_at, int | float):
            return None
        if time.time() - logged_in_at > self.max_lifetime:
            return None
        wrangler_id = session["wrangler_id"]
        generation = session_generation(wrangler_id)
        if generation is None or session.get("generation") != generation:
            return None
        return wrangler_id

    def identity(self, request):
        def session_generation(wrangler_id):
            wrangler = request.db.get(Wrangler, wrangler_id)
            return None if wrangler is None else wrangler.session_generation

        wrangler_id = self.current_login(request.session, session_generation)
        # From the session's identity map: no second query.
        return None if wrangler_id is None else request.db.get(Wrangler, wrangler_id)

    def authenticated_userid(self, request):
        wrangler = request.identity
        return wrangler.id if wrangler is not None else None

    def permits(self, request, context, permission):
        principals = ["system.Everyone"]
        if request.identity is not None:
            principals.append(Authenticated)
        return ACLHelper().permits(context, principals, permission)

    def remember(self, request, userid, generation=0, **kw):
        # A new session id on login, so a planted session cannot be carried into the admin.
        request.session.invalidate()
        request.session["wrangler_id"] = userid
        request.session["generation"] = generation
        request.session["logged_in_at"] = int(time.time())
        new_csrf_token(request)
        return []

    def forget(self, request, **kw):
        request.session.invalidate()
        return []


def includeme(config):
    max_lifetime = int(config.get_settings().get("session.max_lifetime", MAX_LIFETIME))
    wranglers.configure_hasher(config.get_settings())
    config.set_root_factory(RootFactory)
    config.set_security_policy(SessionSecurityPolicy(max_lifetime))
    # Read here so that a bad setting stops the app at start, not at the first login.
    config.registry["login_throttle_policy"] = Policy.from_settings(config.get_settings())
