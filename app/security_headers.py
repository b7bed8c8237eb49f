"""Headers every answer of the site carries, whatever made it (a view, an error page, the page
cache): no script or style from anywhere but the site itself (and no inline ones), no framing,
no MIME sniffing, and no Referer, since organizers' secret links live in URLs."""

from pyramid.events import NewResponse

POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
HEADERS = {
    "Content-Security-Policy": POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


def add_security_headers(event) -> None:
    for name, value in HEADERS.items():
        event.response.headers.setdefault(name, value)


def includeme(config):
    config.add_subscriber(add_security_headers, NewResponse)
