"""The template app a new Pyramid app gets on the host, as Webfaction's control panel laid one
out: a placeholder Pyramid project in the app's directory with `bin/start`, `bin/stop` and
`bin/restart`, serving a page on the app's port until the real code replaces it (the seed
guide's `init_staging` "deletes the template app code directory and config files" and changes
`bin/start`; deploy/flows/staging.py does that with `TEMPLATE_PATHS`).
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

PACKAGE = "myapp"
CONFIG = "myapp.ini"
LOG = "myapp.log"
PID = "myapp.pid"
SCRIPTS = ("bin/start", "bin/stop", "bin/restart")
# Everything the template puts (or its bin/start leaves) in the app's directory.
TEMPLATE_PATHS = (PACKAGE, CONFIG, LOG, PID, *SCRIPTS)

_APP = '''"""A placeholder Pyramid app: replace it with your own code."""

from pyramid.config import Configurator
from pyramid.response import Response

PAGE = """<!doctype html>
<title>{name}</title>
<h1>{name}</h1>
<p>This Pyramid app was just created on the hosting panel. Deploy your code to replace it.</p>
"""


def placeholder(request):
    return Response(PAGE, content_type="text/html")


def main(global_config, **settings):
    with Configurator(settings=settings) as config:
        config.add_route("any", "/*rest")
        config.add_view(placeholder, route_name="any")
        return config.make_wsgi_app()
'''

_CONFIG = """[app:main]
use = call:{package}:main

[server:main]
use = egg:waitress#main
host = 127.0.0.1
port = {port}
"""

# pserve runs in the background, as Webfaction's template did; its pid says what bin/stop ends.
_START = """#!/bin/sh
# Starts the template app. Replace this app (and this script) with your own.
cd "$(dirname "$0")/.." || exit 1
if [ -f {pid} ] && kill -0 "$(cat {pid})" 2>/dev/null; then exit 0; fi
nohup {python} -m pyramid.scripts.pserve {config} >> {log} 2>&1 &
echo $! > {pid}
"""

# bin/stop waits for the process to end, so the port is free once it returns.
_STOP = """#!/bin/sh
# Stops the template app started by bin/start.
cd "$(dirname "$0")/.." || exit 1
[ -f {pid} ] || exit 0
pid=$(cat {pid})
kill "$pid" 2>/dev/null
i=0
while kill -0 "$pid" 2>/dev/null && [ "$i" -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
rm -f {pid}
"""

_RESTART = """#!/bin/sh
"$(dirname "$0")/stop" && exec "$(dirname "$0")/start"
"""


def lay_out(directory: Path, name: str, port: int, python: str = sys.executable) -> None:
    """Write the template app into `directory` (which the caller has checked is empty)."""
    values = {
        "name": name,
        "package": PACKAGE,
        "port": port,
        "pid": PID,
        "config": CONFIG,
        "log": LOG,
        "python": shlex.quote(python),
    }
    (directory / PACKAGE).mkdir(parents=True)
    (directory / PACKAGE / "__init__.py").write_text(_APP.replace("{name}", name))
    (directory / CONFIG).write_text(_CONFIG.format(**values))
    (directory / "bin").mkdir()
    for script, text in zip(SCRIPTS, (_START, _STOP, _RESTART), strict=True):
        path = directory / script
        path.write_text(text.format(**values))
        path.chmod(0o755)


def is_template(directory: Path) -> bool:
    """Whether the directory holds the template app and nothing else (never deployed to)."""
    if not (directory / CONFIG).is_file():
        return False
    allowed = {path.split("/")[0] for path in TEMPLATE_PATHS}
    return all(child.name in allowed for child in directory.iterdir())
