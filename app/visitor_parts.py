"""The parts of a page that belong to one visitor: their flash messages, the Admin link of a
logged-in wrangler, a form's CSRF token. Everything else on a public page is the same for every
visitor, so the page cache (app/page_cache.py) keeps pages with holes where these parts go and
fills the holes for each visitor.

Templates ask for a part with `request.visitor_part(name)`. While the page cache renders a page
to keep, the answer is a marker holding a secret of the process (a rider's name cannot forge
one: it is escaped, and it cannot guess the secret); otherwise it is the part itself.
"""

import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from markupsafe import Markup
from pyramid.csrf import get_csrf_token
from pyramid.interfaces import ISecurityPolicy
from pyramid_tm import is_tm_active

from . import security

FLASH_QUEUES = ("success", "info", "error")
NOTHING = Markup("")


def flash_messages(request) -> Markup:
    session = request.session
    # Peek first: popping an empty queue would still send a new session cookie.
    queues = [queue for queue in FLASH_QUEUES if session.peek_flash(queue)]
    if not queues:
        return NOTHING
    return Markup("").join(
        Markup('<p class="flash {0}" role="{1}">{2}</p>\n').format(
            queue, "alert" if queue == "error" else "status", message
        )
        for queue in queues
        for message in session.pop_flash(queue)
    )


def admin_link(request) -> Markup:
    if not logged_in(request):
        return NOTHING
    return Markup('<a href="{0}">Admin</a>').format(request.route_url("admin.home"))


def logged_in(request) -> bool:
    if not security.may_be_logged_in(request.session):
        return False  # most visitors: no need for the database
    if is_tm_active(request):
        return request.identity is not None
    # Filled by the page cache, outside any transaction: the same check as identity's, with the
    # wrangler's session generation read over the page cache's own connection, without the
    # ORM session and transaction that would cost ten times the rest of the answer.
    reads = request.registry.get("quick_reads")
    if reads is None:  # no page cache: an error page drawn after its transaction ended
        with request.tm:
            return request.identity is not None
    policy = request.registry.queryUtility(ISecurityPolicy)
    return policy.current_login(request.session, reads.session_generation) is not None


def csrf_token(request) -> Markup:
    return Markup("{0}").format(get_csrf_token(request))


@dataclass(frozen=True)
class Part:
    fill: Callable
    # What a visitor without a session sees; None when filling it starts a session.
    without_session: Markup | None


PARTS = {
    "flash": Part(flash_messages, NOTHING),
    "admin_link": Part(admin_link, NOTHING),
    "csrf_token": Part(csrf_token, None),
}


class Holes:
    """Marks where the parts go in a page rendered to be kept, and finds them again."""

    def __init__(self):
        secret = secrets.token_hex(16)
        self.marker = "<!--visitor-part:" + secret + ":{0}-->"
        self.pattern = re.compile(rb"<!--visitor-part:" + secret.encode() + rb":(\w+)-->")

    def mark(self, name: str) -> Markup:
        if name not in PARTS:
            raise KeyError(f"no visitor part called {name!r}")
        return Markup(self.marker.format(name))

    def split(self, body: bytes) -> tuple:
        """(text, part name, text, part name, ..., text): the page's own bytes, and between
        them the names of the parts that go there."""
        pieces = self.pattern.split(body)
        return tuple(piece if i % 2 == 0 else piece.decode() for i, piece in enumerate(pieces))


def fill(pieces: tuple, request, charset: str) -> bytes:
    return b"".join(
        piece if i % 2 == 0 else PARTS[piece].fill(request).encode(charset)
        for i, piece in enumerate(pieces)
    )


def fill_without_session(pieces: tuple, charset: str) -> bytes | None:
    """The page as every visitor without a session sees it, or None when it needs a session."""
    parts = [PARTS[piece].without_session for piece in pieces[1::2]]
    if any(part is None for part in parts):
        return None
    out = [pieces[0]]
    for part, text in zip(parts, pieces[2::2], strict=True):
        out += [part.encode(charset), text]
    return b"".join(out)


def visitor_part(request, name: str) -> Markup:
    holes = getattr(request, "page_holes", None)  # set by the page cache while it renders
    if holes is not None:
        return holes.mark(name)
    return PARTS[name].fill(request)


def includeme(config):
    config.add_request_method(visitor_part, "visitor_part")
