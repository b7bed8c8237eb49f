"""Wranglers (club admins) log in with email and password; the session remembers who they are."""

from pyramid.authorization import ACLHelper, Allow, Authenticated
from pyramid.csrf import new_csrf_token

from .models import Wrangler

ADMIN = "admin"


class RootFactory:
    __acl__ = [(Allow, Authenticated, ADMIN)]

    def __init__(self, request):
        self.request = request


class SessionSecurityPolicy:
    def identity(self, request):
        wrangler_id = request.session.get("wrangler_id")
        if wrangler_id is None:
            return None
        return request.db.get(Wrangler, wrangler_id)

    def authenticated_userid(self, request):
        wrangler = request.identity
        return wrangler.id if wrangler is not None else None

    def permits(self, request, context, permission):
        principals = ["system.Everyone"]
        if request.identity is not None:
            principals.append(Authenticated)
        return ACLHelper().permits(context, principals, permission)

    def remember(self, request, userid, **kw):
        # A new session id on login, so a planted session cannot be carried into the admin.
        request.session.invalidate()
        request.session["wrangler_id"] = userid
        new_csrf_token(request)
        return []

    def forget(self, request, **kw):
        request.session.invalidate()
        return []


def includeme(config):
    config.set_root_factory(RootFactory)
    config.set_security_policy(SessionSecurityPolicy())
