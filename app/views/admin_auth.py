"""Wranglers log in and out; the admin home page links to what they manage."""

import functools
import math
import secrets
from urllib.parse import urlsplit

from pyramid.httpexceptions import HTTPFound
from pyramid.renderers import render_to_response
from pyramid.security import forget, remember
from pyramid.view import view_config
from sqlalchemy import func, select

from .. import forms, login_throttle
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


def authenticate(request, email: str, password: str) -> int | None:
    """The wrangler's id if the password is theirs. Read and verified outside the request's
    transaction: a POST's transaction holds SQLite's write lock, and every sign-up would wait
    on argon2."""
    with request.registry["dbsession_factory"]() as db:
        wrangler = db.scalar(select(Wrangler).where(Wrangler.email == email))
    if wrangler is None:
        _nobody().verify_password(password)
        return None
    return wrangler.id if wrangler.verify_password(password) else None


def wait_text(seconds: int) -> str:
    if seconds < 60:
        return f"{seconds} second{'s' if seconds != 1 else ''}"
    minutes = math.ceil(seconds / 60)
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


def too_many_attempts(request, seconds: int):
    response = render_to_response("429.jinja2", {"wait_text": wait_text(seconds)}, request)
    response.status_int = 429
    response.headers["Retry-After"] = str(seconds)
    return response


@view_config(route_name="admin.login", renderer="admin/login.jinja2")
def login(request):
    next_path = safe_next(request.params.get("next"))
    form = forms.FormResult({}, {}, {})
    failed = False
    if request.method == "POST":
        form = forms.validate(LoginSchema(), request.POST)
        if form.ok:
            email, password = form.values["email"], form.values["password"]
            # The throttle's transactions come before anything touches request.db. The address
            # is REMOTE_ADDR, which waitress takes from the trusted router; client_addr would
            # believe any X-Forwarded-For a client sends.
            keys = login_throttle.keys(request.remote_addr, email)
            wait = login_throttle.take_attempt(request, keys)
            if wait is not None:
                return too_many_attempts(request, wait)
            wrangler_id = authenticate(request, email, password)
            if wrangler_id is not None:
                login_throttle.record_success(request, keys)
                wrangler = request.db.get(Wrangler, wrangler_id)
                if wrangler.needs_rehash():
                    wrangler.set_password(password)
                headers = remember(request, wrangler.id, generation=wrangler.session_generation)
                request.session.flash(f"Logged in as {wrangler.email}.", "success")
                return HTTPFound(next_path or request.route_url("admin.home"), headers=headers)
            failed = True
        # 200, not 400: the shared `login` test fixture submits without expecting an error.
        form.submitted["password"] = ""
    return {"form": form, "next": next_path, "failed": failed, "message": WRONG_CREDENTIALS}


@view_config(route_name="admin.logout", permission=ADMIN, renderer="admin/logout.jinja2")
def logout(request):
    """GET asks, POST logs out: a link or a prefetch must not end a wrangler's session. Logging
    out ends the wrangler's sessions everywhere, not just in this browser."""
    if request.method == "POST":
        request.identity.end_sessions()
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
