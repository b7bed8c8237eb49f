"""`make run`: a complete local hosting environment on this machine. The host (hosting panel,
router, and an SMTP sink that keeps every mail) under its supervisord, then the checkout as the
staging release: `init_staging` the first time, `deploy_staging` after.

    python -m deploy.flows.local_env up | down | status
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from deploy.flows import promote, staging
from deploy.flows.release import DeployError
from deploy.host import paths, service, supervisor
from deploy.remote import records
from deploy.remote.target import CHECKOUT, Target, TargetError

# The host and its ports: var/host and the fixed ports unless the environment says otherwise
# (a second host on the machine, such as the test of `make run` itself, runs beside the first).
ROOT = Path(os.environ.get("RANDOPONY_HOST_ROOT") or paths.default_root()).resolve()
PANEL_PORT = int(os.environ.get("RANDOPONY_PANEL_PORT") or paths.DEFAULT_PANEL[1])
ROUTER_PORT = int(os.environ.get("RANDOPONY_ROUTER_PORT") or paths.DEFAULT_ROUTER[1])
MAIL_PORT = int(os.environ.get("RANDOPONY_MAIL_PORT") or 8025)
APP_PORTS = os.environ.get("RANDOPONY_APP_PORTS") or None  # FIRST-LAST; None: the panel's
HOSTING_API = f"http://127.0.0.1:{PANEL_PORT}/"
DEV_WRANGLER_PASSWORD = "randopony-dev"


def hosting_password(root: Path) -> str:
    """The local panel's account password, made once and kept beside the host (never in git)."""
    path = root.parent / "host-password"
    if not path.exists():
        root.mkdir(parents=True, exist_ok=True)
        password = secrets.token_urlsafe(18)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "deploy.host.server",
                "set-password",
                "--root",
                str(root),
                "randopony",
            ],
            input=password + "\n",
            text=True,
            check=True,
            capture_output=True,
        )
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(password)
    return path.read_text().strip()


FIRST_PRODUCTION = "2026r1"


def up() -> int:
    password = hosting_password(ROOT)
    (ROOT / "deploy").mkdir(parents=True, exist_ok=True)
    env_file = ROOT / "deploy" / "release.env"
    if not env_file.exists():
        # Releases on this machine mail the sink, never the world.
        env_file.write_text(f"RANDOPONY_SMTP_HOST=127.0.0.1\nRANDOPONY_SMTP_PORT={MAIL_PORT}\n")
    service.print_status(
        service.host_up(
            ROOT, PANEL_PORT, ROUTER_PORT, mail_port=MAIL_PORT, wait_limit=30, app_ports=APP_PORTS
        )
    )
    os.environ.setdefault("RANDOPONY_HOSTING_PASSWORD", password)
    os.environ.setdefault("RANDOPONY_HOST_ROOT", str(ROOT))
    os.environ.setdefault("RANDOPONY_HOSTING_API", HOSTING_API)
    import fabfile  # the checkout's own values: what `fab` uses afterwards

    try:
        roles = host_roles(fabfile.target())
        if roles["production"] is None:
            # A new machine: the checkout goes live as production first, with demo events.
            first = Target(
                host_root=str(ROOT),
                hosting_api=HOSTING_API,
                checkout=CHECKOUT,
                staging_release=FIRST_PRODUCTION,
            )
            if roles["staging"] != FIRST_PRODUCTION:
                staging.init_staging(first, password, DEV_WRANGLER_PASSWORD)
            promote.promote(first, yes=True, wrangler_password=DEV_WRANGLER_PASSWORD, demo=True)
        target = fabfile.target()
        if host_roles(target)["staging"] == target.staging_release:
            address = staging.deploy_staging(target)
        else:
            address = staging.init_staging(target, password, DEV_WRANGLER_PASSWORD)
    except (TargetError, DeployError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    production = f"http://{target.production_domain}:{staging.router_port(target)}/"
    answer = production_answers(target)
    if answer.get("http") != 200:
        print(
            f"error: production does not answer at {production}up: {answer}\n"
            f"  what the host did when it started: {service.boot_log(ROOT)}",
            file=sys.stderr,
        )
        return 1
    print(
        f"\nRandoPony production is live: {production}\n"
        f"  staging beside it: {address}\n"
        f"  admin: /admin/login on either ({target.wrangler_email} / {DEV_WRANGLER_PASSWORD})\n"
        f"  mail the sites send: {ROOT / 'mail'} (one .eml each), and "
        f"{paths.host_logs(ROOT) / 'mail.log'}\n"
        "  next: change a template, .venv/bin/fab deploy_staging, "
        ".venv/bin/fab promote_staging_to_production; stop everything: make stop\n"
    )
    return 0


def host_roles(target: Target) -> dict:
    with target.connected() as host:
        return records.read_roles(host)


def production_answers(target, timeout: float = 60) -> dict:
    """Production's /up through the router, as a browser reaches it; polled until it answers
    200 from the release the host calls production, or the time is up."""
    expected = host_roles(target)["production"]
    port = staging.router_port(target)
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/up", headers={"Host": f"{target.production_domain}:{port}"}
    )
    deadline = time.monotonic() + timeout
    answer = {}
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                answer = dict(json.loads(response.read()), http=response.status)
            if answer.get("release") == expected:
                return answer
            answer["http"] = None
            answer["error"] = f"answered by {answer.get('release')}, not {expected}"
        except urllib.error.HTTPError as error:
            answer = {"http": error.code, "error": error.reason}
        except (OSError, ValueError) as error:
            answer = {"http": None, "error": str(error)}
        time.sleep(0.5)
    return answer


def down() -> int:
    for sock in sorted((ROOT / "webapps").glob("*/supervisor.sock")):
        print(f"stopping {sock.parent.name}: ", end="", flush=True)
        print("stopped" if supervisor.shutdown(sock) else "was not running")
    service.print_status(service.host_down(ROOT))
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="deploy.flows.local_env", description=__doc__)
    parser.add_argument("command", choices=["up", "down", "status"])
    args = parser.parse_args(argv)
    if args.command == "up":
        return up()
    if args.command == "down":
        return down()
    service.print_status(service.host_status(ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main())
