"""Wranglers log in and out; the admin home page links to what they manage."""

import functools
import secrets
from urllib.parse import urlsplit

from pyramid.httpexceptions import HTTPFound
from pyramid.security import forget, remember
from pyramid.view import view_config
from sqlalchemy import func, select

from .. import forms
from ..admin_forms import LoginSchema
from ..models import Brevet, Populaire, Wrangler
from ..security import ADMIN

WRONG_CREDENTIALS = "Wrong email or password."


def safe_next(value) -> str | None:
    """Where to go after logging in: only a path of this site's admin pages, so a crafted
    login link cannot send a wrangler somewhere else."""
    if not isinstance(value, str) or not (value == "/admin" or value.startswith("/admin/")):
        return None
    if "\\" in value or any(ord(c) < 32 for c in value):
        return None
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return None
    return value


@functools.cache
def _nobody() -> Wrangler:
    """A wrangler no one can log in as: checking an unknown email against its hash takes as
    long as checking a known one, so the time to answer does not tell which emails exist."""
    nobody = Wrangler(email="")
    nobody.set_password(secrets.token_urlsafe(32))
    return nobody


def authenticate(db, email: str, password: str) -> Wrangler | None:
    wrangler = db.scalar(select(Wrangler).where(Wrangler.email == email))
    if wrangler is None:
        _nobody().check_password(password)
        return None
    return wrangler if wrangler.check_password(password) else None


@view_config(route_name="admin.login", renderer="admin/login.jinja2")
def login(request):
    next_path = safe_next(request.params.get("next"))
    form = forms.FormResult({}, {}, {})
    failed = False
    if request.method == "POST":
        form = forms.validate(LoginSchema(), request.POST)
        if form.ok:
            wrangler = authenticate(request.db, form.values["email"], form.values["password"])
            if wrangler is not None:
                headers = remember(request, wrangler.id)
                request.session.flash(f"Logged in as {wrangler.email}.", "success")
                return HTTPFound(next_path or request.route_url("admin.home"), headers=headers)
            failed = True
        # 200, not 400: the shared `login` test fixture submits without expecting an error.
        form.submitted["password"] = ""
    return {"form": form, "next": next_path, "failed": failed, "message": WRONG_CREDENTIALS}


@view_config(route_name="admin.logout", permission=ADMIN, renderer="admin/logout.jinja2")
def logout(request):
    """GET asks, POST logs out: a link or a prefetch must not end a wrangler's session."""
    if request.method == "POST":
        headers = forget(request)
        request.session.flash("You are logged out.", "info")
        return HTTPFound(request.route_url("home"), headers=headers)
    return {}


@view_config(route_name="admin.home", permission=ADMIN, renderer="admin/home.jinja2")
def home(request):
    def count(model):
        return request.db.scalar(select(func.count(model.id)))

    return {
        "sections": [
            ("admin.brevets", "Brevets", count(Brevet)),
            ("admin.populaires", "Populaires", count(Populaire)),
            ("admin.wranglers", "Wranglers", count(Wrangler)),
        ]
    }
