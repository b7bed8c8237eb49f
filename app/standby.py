"""A release started ahead of a cutover waits in standby until its data is in place.

A promotion or rollback starts the incoming release's app before production's writes are held, so
the hold does not wait for Python to start. Until the final copy of the database is installed the
app must not open a database file: the copy replaces the file by a rename, so a connection opened
before it would keep serving the old copy, and SQLite could pair a stale `-wal` with the new file.

So an app that starts while its release directory has the standby file (`standby_file` in the
ini) answers every request with 503 and touches no database. The release machinery removes the file
once the copy is in place; the next request opens the database as usual, and the app never looks at
the file again. An app started without the file is never in standby and pays nothing.
"""

import json
import os
from pathlib import Path

from pyramid_jinja2 import IJinja2Environment

TEMPLATES = Path(__file__).parent / "templates"


def waiting(settings) -> bool:
    """Whether an app configured with these settings starts in standby."""
    path = settings.get("standby_file")
    return bool(path) and os.path.exists(path)


def warm_templates(registry) -> int:
    """Compile the page templates while nobody waits for them: otherwise the first requests
    after the switch, held writes among them, would each compile the ones they use."""
    environment = registry.queryUtility(IJinja2Environment, name=".jinja2")
    names = sorted(str(p.relative_to(TEMPLATES)) for p in TEMPLATES.rglob("*.jinja2"))
    for name in names:
        environment.get_template(name)
    return len(names)


class Standby:
    """WSGI middleware outside the whole application, so nothing below it runs while waiting."""

    def __init__(self, app, path: str, release: str = ""):
        self.app = app
        self.path = path
        self.active = False
        # As /up answers, so the release machinery knows which release is waiting on the port.
        answer = {"release": release, "status": "standby", "database": "not opened"}
        self.body = json.dumps(answer).encode()

    def __call__(self, environ, start_response):
        if not self.active:
            if os.path.exists(self.path):
                start_response(
                    "503 Service Unavailable",
                    [
                        ("Content-Type", "application/json"),
                        ("Content-Length", str(len(self.body))),
                        ("Cache-Control", "no-store"),
                        ("Retry-After", "1"),
                    ],
                )
                return [self.body]
            self.active = True
        return self.app(environ, start_response)
