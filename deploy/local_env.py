"""`make run`: a complete local hosting environment on this machine. The host (hosting panel,
router, and an SMTP sink that keeps every mail) under its supervisord, then the checkout as the
staging release: `init_staging` the first time, `deploy_staging` after.

    python -m deploy.local_env up | down | status
"""

from __future__ import annotations

import argparse
import os
import secrets
import subprocess
import sys
from pathlib import Path

from deploy import host_paths, host_service, records, staging, supervisor
from deploy.target import CHECKOUT, Target, TargetError

ROOT = host_paths.default_root()
MAIL_PORT = 8025
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
                "deploy.hosting",
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


def up() -> int:
    password = hosting_password(ROOT)
    (ROOT / "deploy").mkdir(parents=True, exist_ok=True)
    env_file = ROOT / "deploy" / "release.env"
    if not env_file.exists():
        # Releases on this machine mail the sink, never the world.
        env_file.write_text(f"RANDOPONY_SMTP_HOST=127.0.0.1\nRANDOPONY_SMTP_PORT={MAIL_PORT}\n")
    status = host_service.host_up(ROOT, mail_port=MAIL_PORT)
    host_service.print_status(status)
    os.environ.setdefault("RANDOPONY_HOSTING_PASSWORD", password)
    target = Target(host_root=str(ROOT), checkout=CHECKOUT)
    roles = records.read_roles(target.checked().connect())
    try:
        if roles["staging"] == target.staging_release:
            address = staging.deploy_staging(target)
        else:
            address = staging.init_staging(target, password, DEV_WRANGLER_PASSWORD)
    except (TargetError, staging.DeployError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(
        f"\nRandoPony staging is live: {address}\n"
        f"  admin: {address}admin/login  ({target.wrangler_email} / {DEV_WRANGLER_PASSWORD})\n"
        f"  mail the site sends: {ROOT / 'mail'} (one .eml each), and "
        f"{host_paths.host_logs(ROOT) / 'mail.log'}\n"
        f"  redeploy after a change: .venv/bin/fab deploy_staging; stop everything: make stop\n"
    )
    return 0


def down() -> int:
    for sock in sorted((ROOT / "webapps").glob("*/supervisor.sock")):
        print(f"stopping {sock.parent.name}: ", end="", flush=True)
        print("stopped" if supervisor.shutdown(sock) else "was not running")
    host_service.print_status(host_service.host_down(ROOT))
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="deploy.local_env", description=__doc__)
    parser.add_argument("command", choices=["up", "down", "status"])
    args = parser.parse_args(argv)
    if args.command == "up":
        return up()
    if args.command == "down":
        return down()
    host_service.print_status(host_service.host_status(ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main())
