"""What the host's cron runs, by the scripts deploy/flows/schedule.py installs, with the
staging release's own code (`randopony-schedule JOB`): the nightly sync of staging, and the
reminder that an upgrade attempt's window has run out."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime

from deploy.flows import sync, upgrade_attempt
from deploy.flows.release import DeployError
from deploy.flows.schedule import JOBS
from deploy.remote import records
from deploy.remote.hosts import HostError, LocalHost
from deploy.remote.target import Target, TargetError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="randopony-schedule")
    parser.add_argument("job", choices=JOBS)
    parser.add_argument("--root", required=True)
    parser.add_argument("--app", required=True)
    parser.add_argument("--production-domain")
    parser.add_argument("--staging-domain")
    args = parser.parse_args(argv)

    def echo(line: str) -> None:
        print(f"{datetime.now():%Y-%m-%d %H:%M:%S} {line}", flush=True)

    host = LocalHost(args.root)
    roles = records.read_roles(host)
    if args.job == "upgrade_reminder":
        said = upgrade_attempt.reminder(host)
        if said:
            echo(said)
        return 0
    target = Target(
        app_name=args.app,
        staging_release=roles.get("staging") or "",
        production_release=roles.get("production"),
        staging_domain=args.staging_domain,
        production_domain=args.production_domain,
        host_root=args.root,
        echo=echo,
    )
    try:
        summary = sync.sync_staging(target)
    except (TargetError, DeployError, HostError, OSError) as error:
        echo(f"sync_staging failed: {error}")
        return 1
    sync.print_summary(summary, echo, show_password=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
