"""The home page, the information pages, the health check and the error pages."""

from pyramid.exceptions import BadCSRFToken
from pyramid.httpexceptions import HTTPMovedPermanently
from pyramid.interfaces import IRoutesMapper
from pyramid.response import Response
from pyramid.view import forbidden_view_config, notfound_view_config, view_config
from sqlalchemy.exc import SQLAlchemyError

from .. import migrations
from ..models import WriteLockBusy
from ..models.site_config import MissingConfiguration, get_link
from .brevets import current_brevets
from .populaires import current_populaires


@view_config(route_name="home", renderer="home.jinja2")
def home(request):
    return {"brevets": current_brevets(request), "populaires": current_populaires(request)}


@view_config(route_name="organizer_info", renderer="organizer_info.jinja2")
def organizer_info(request):
    return {}


@view_config(route_name="about_pony", renderer="about_pony.jinja2")
def about_pony(request):
    try:
        entry_form = get_link(request.db, "entry_form")
    except MissingConfiguration:
        entry_form = None
    return {"entry_form": entry_form}


@view_config(route_name="up", renderer="json", http_cache=0)
def up(request):
    """For the release machinery and monitoring: 200 only when the database answers and its
    schema is at this code's alembic head."""
    heads = migrations.code_heads(request.registry.settings)
    answer = {
        "release": request.registry.settings.get("release", ""),
        "code_head": heads[0] if len(heads) == 1 else list(heads),
    }
    try:
        revision = migrations.database_revision(request.registry["db_engine"])
    except SQLAlchemyError as error:
        request.response.status_int = 503
        return dict(answer, status="down", database="unreachable", error=type(error).__name__)
    ok = revision is not None and (revision,) == heads
    request.response.status_int = 200 if ok else 503
    return dict(answer, status="ok" if ok else "migration needed", database="ok", revision=revision)


def _matches_route(request, path) -> bool:
    mapper = request.registry.queryUtility(IRoutesMapper)
    return any(route.match(path) is not None for route in mapper.get_routes())


@notfound_view_config(renderer="404.jinja2")
def not_found(request):
    # Old links with or without a trailing slash keep working.
    path = request.path_info
    alternative = path[:-1] if path.endswith("/") and len(path) > 1 else path + "/"
    if request.method in ("GET", "HEAD") and _matches_route(request, alternative):
        query = "?" + request.query_string if request.query_string else ""
        return HTTPMovedPermanently(location=request.application_url + alternative + query)
    request.response.status_int = 404
    detail = getattr(request.exception, "detail", None)
    return {"detail": detail if isinstance(detail, str) else None}


@forbidden_view_config(renderer="403.jinja2")
def forbidden(request):
    request.response.status_int = 403
    return {"logged_in": request.identity is not None}


@view_config(context=WriteLockBusy)
def write_lock_busy(request):
    """Every try of the request found other writers holding the database: nothing was stored,
    and the browser may send it again. A plain page: the site's layout could need the database."""
    response = Response(
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        "<title>Busy | RandoPony</title></head><body><h1>The site is busy</h1>"
        "<p>Nothing was saved. Please go back and send the form again in a moment.</p>"
        "</body></html>\n",
        status=503,
        content_type="text/html",
    )
    response.headers["Retry-After"] = "5"
    return response


@view_config(context=BadCSRFToken, renderer="400.jinja2")
def bad_csrf(request):
    request.response.status_int = 400
    return {
        "message": "This form has expired or was not sent from this site. "
        "Please go back, reload the page and try again."
    }
