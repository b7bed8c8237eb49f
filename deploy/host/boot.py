"""What the host does each time it starts (`make run`, `fab host_up`, a restarted machine):
bring back every release that should run, as the host's records say, each under its own
supervisord and with its own code.

    randopony-host-boot [--root DIR]

The host's supervisord runs this once when it starts. Production and staging come back with
their apps and workers. While a release operation is unfinished (its lock is on the host),
only the apps come back: the workers wait for `--resume` or the undo, which know whose mail
queue is whose, so no mail is sent twice.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from deploy.host import layout, paths, supervisor

# The releases that serve a domain; a rollback target or a bad release stays stopped.
SERVING_ROLES = ("production", "staging")


@dataclass(frozen=True)
class Release:
    role: str
    name: str
    directory: Path


def releases_to_run(root: Path) -> list[Release]:
    """Production first, then staging, from roles.json and the releases' own release.json."""
    roles_path = Path(layout.roles_file(root))
    roles = json.loads(roles_path.read_text()) if roles_path.exists() else {}
    by_name = {}
    for release_json in sorted(paths.webapps(root).glob(f"*/{layout.RELEASE_JSON}")):
        try:
            name = json.loads(release_json.read_text()).get("release")
        except ValueError:
            continue
        by_name[name] = release_json.parent
    wanted = []
    for role in SERVING_ROLES:
        name = roles.get(role)
        if name and name in by_name and (by_name[name] / layout.SUPERVISORD_CONF).exists():
            wanted.append(Release(role, name, by_name[name]))
    return wanted


def operation_unfinished(root: Path) -> dict | None:
    """The holder of the host's lock, if a release operation did not finish."""
    lock = Path(layout.deploy_dir(root)) / "lock"
    if not lock.exists():
        return None
    holder = lock / "holder.json"
    try:
        return json.loads(holder.read_text()) if holder.exists() else {}
    except ValueError:
        return {}


def runtime(release: Release, *command: str) -> subprocess.CompletedProcess:
    """The release's own runtime, in its own virtualenv, with a plain environment: nothing of
    whoever started the host reaches the release's processes."""
    return subprocess.run(
        layout.release_program(
            release.directory, "randopony-release", str(release.directory), *command
        ),
        cwd=release.directory,
        env=supervisor.plain_environment(),
        capture_output=True,
        text=True,
        check=False,
    )


def bring_back(root: Path, say=print) -> bool:
    """Start what should run; True when every release that should serve answers /up."""
    releases = releases_to_run(root)
    if not releases:
        say("no release to bring back")
        return True
    unfinished = operation_unfinished(root)
    start = ["start-supervisor"]
    if unfinished is not None:
        start.append("--app-only")
        say(
            f"a release operation is unfinished ({unfinished.get('purpose', '?')} of "
            f"{unfinished.get('release', '?')}): apps only; the workers wait for its --resume "
            "or its undo"
        )
    healthy = True
    for release in releases:
        if (release.directory / layout.STANDBY).exists():
            # A cutover was cut off after this app started ahead of its hold: it waits again,
            # opening nothing, until the --resume puts its data in place (or the undo stops it).
            started = runtime(release, "start-supervisor", "--app-only", "--standby")
            say(f"{release.role} {release.name}: {(started.stdout or started.stderr).strip()}")
            answer = runtime(release, "wait-up", "--standby", "--timeout", "60")
            say(f"{release.role} {release.name} waits in standby: {answer.stdout.strip()}")
            continue
        started = runtime(release, *start)
        said = (started.stdout or started.stderr).strip()
        say(f"{release.role} {release.name}: {said}")
        answer = runtime(release, "wait-up", "--timeout", "60")
        if answer.returncode != 0:
            healthy = False
            say(f"{release.role} {release.name} does not report healthy: {answer.stdout.strip()}")
        else:
            say(f"{release.role} {release.name} answers /up")
    return healthy


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="randopony-host-boot", description=__doc__.split("\n")[0])
    parser.add_argument("--root", type=Path, default=paths.default_root())
    args = parser.parse_args(argv)
    return 0 if bring_back(args.root.resolve(), say=lambda line: print(line, flush=True)) else 1


if __name__ == "__main__":
    sys.exit(main())
