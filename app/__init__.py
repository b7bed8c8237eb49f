"""RandoPony: pre-registration for randonneuring brevets and populaires."""

from pyramid.config import Configurator
from pyramid.session import SignedCookieSessionFactory

from . import settings as app_settings
from . import standby


def main(global_config, **settings):
    """The WSGI application (`[app:main]` in the ini files)."""
    settings = app_settings.load(settings)
    session_factory = SignedCookieSessionFactory(
        settings["session_secret"],
        cookie_name=settings.setdefault("session.cookie_name", "randopony_session"),
        httponly=True,
        samesite="Lax",
        secure=app_settings.as_bool(settings.get("session.secure_cookie", False)),
        timeout=8 * 3600,
        reissue_time=600,  # not on every request: a cookie per page defeats caching
    )
    # Plain-text templates (emails) must not be HTML-escaped.
    settings.setdefault("jinja2_text.autoescape", "false")
    with Configurator(settings=settings, session_factory=session_factory) as config:
        config.include("pyramid_jinja2")
        config.add_jinja2_renderer(".jinja2")
        config.add_jinja2_search_path("app:templates", name=".jinja2")
        config.add_jinja2_renderer(".txt", settings_prefix="jinja2_text.")
        config.add_jinja2_search_path("app:templates", name=".txt")
        config.include(".models")
        config.include(".request_replay")
        config.include(".security_headers")
        config.include(".request_limits")
        config.include(".security")
        config.include(".worker")
        config.include(".routes")
        config.include(".templating")
        if app_settings.as_bool(settings.get("page_cache", True)):
            config.include(".page_cache")
        config.set_default_csrf_options(require_csrf=True)
        config.scan(".views")
    app = config.make_wsgi_app()
    if standby.waiting(settings):
        standby.warm_templates(app.registry)
        return standby.Standby(app, settings["standby_file"], settings.get("release", ""))
    return app
