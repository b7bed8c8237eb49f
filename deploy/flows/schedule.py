"""Work the host does by itself, from the account's crontab: the nightly `sync_staging`, and the
reminder that an upgrade attempt's window has run out.

Each entry is one crontab line ending in a marker naming the job and the host root, so entries of
other hosts or of the account's own are never touched. The entry runs a small script kept in the
host's `deploy/bin/`, which finds the current staging release at run time (the entry outlives
releases) and runs the job (deploy/flows/cron_jobs.py) with that release's own code; its output
goes to the host's `logs/user/`.
"""

from __future__ import annotations

import re
import shlex
from pathlib import PurePosixPath

from deploy.flows import sync
from deploy.host import layout
from deploy.remote.hosts import Host
from deploy.remote.target import Target, TargetError

AT = re.compile(r"^([01]?[0-9]|2[0-3]):([0-5][0-9])$")
JOBS = ("sync_staging", "upgrade_reminder")


def marker(job: str, root: PurePosixPath) -> str:
    return f"# randopony {job} {root}"


def log_file(root: PurePosixPath, job: str) -> PurePosixPath:
    return root / "logs" / "user" / f"{job}.log"


def script_file(root: PurePosixPath, job: str) -> PurePosixPath:
    return layout.deploy_dir(root) / "bin" / job


def parse_at(value: str) -> tuple[int, int]:
    found = AT.fullmatch(str(value or "").strip())
    if not found:
        raise TargetError(f"invalid time {value!r}: use HH:MM on the host's clock, e.g. 03:00")
    return int(found.group(1)), int(found.group(2))


# The script cron runs: system python3, no release code of its own, so it keeps working as
# releases come and go.
SCRIPT = """#!/usr/bin/env python3
# Written by `fab {fab_task}`; run by cron. Finds the staging release now and runs {job}
# with its code.
import json, os, sys, time
root, app = {root!r}, {app!r}
print(time.strftime("%Y-%m-%d %H:%M:%S"), "{job}: start", flush=True)
try:
    with open(os.path.join(root, "deploy", "roles.json")) as f:
        roles = json.load(f)
except OSError:
    roles = {{}}
release = roles.get({role!r})
if not release:
    print("no {role} release on this host: nothing to do", flush=True)
    sys.exit(0)
directory = os.path.join(root, "webapps", app + release)
arguments = ["{job}", "--root", root, "--app", app, {arguments}]
os.chdir(directory)
# A release installed before the randopony-schedule script existed has only the module path.
program = os.path.join(directory, "env", "bin", "randopony-schedule")
if os.access(program, os.X_OK):
    os.execv(program, [program, *arguments])
python = os.path.join(directory, "env", "bin", "python")
os.execv(python, [python, "-m", "deploy.schedule", *arguments])
"""


def _crontab(host: Host) -> list[str]:
    if host.run(["sh", "-c", "command -v crontab"], check=False).returncode != 0:
        raise TargetError(
            "the host has no crontab command: install cron (Debian: apt install cron)"
        )
    listed = host.run(["crontab", "-l"], check=False)
    if listed.returncode != 0 and "no crontab" not in listed.stderr:
        raise TargetError(f"crontab -l failed on the host: {listed.stderr.strip()}")
    return listed.stdout.splitlines() if listed.returncode == 0 else []


# One shell command on the host, under an flock of the account's: the account's crontab is
# shared by every host root and by the account's own entries, so two edits at once (two
# maintainers, a test run beside a developer's host) must not lose each other's lines. A crontab
# that cannot be read is never replaced.
EDIT_CRONTAB = r"""
exec 9>>"${HOME:-/tmp}/.randopony-crontab.lock"
flock 9
if ! current=$(crontab -l 2>&1); then
    case "$current" in *"no crontab"*) current="" ;; *) echo "$current" >&2; exit 3 ;; esac
fi
printf '%s\n' "$current" | grep -vF -- "$1" | grep -v '^$' > "$3" || true
if [ -n "$2" ]; then printf '%s\n' "$2" >> "$3"; fi
crontab "$3"
"""


def _edit_crontab(host: Host, job: str, line: str | None) -> None:
    """Drop the job's line (by its marker) and add `line`, if given, in one locked edit."""
    _crontab(host)  # refuses clearly when the host has no crontab or cannot read it
    new = layout.deploy_dir(host.root) / "crontab.new"
    host.mkdir(new.parent)
    try:
        host.run(["sh", "-c", EDIT_CRONTAB, "sh", marker(job, host.root), line or "", str(new)])
    finally:
        host.remove(new)


def entry(host: Host, job: str) -> str | None:
    mark = marker(job, host.root)
    return next((line for line in _crontab(host) if line.endswith(mark)), None)


def install(
    target: Target, host: Host, job: str, when: str, arguments: list[str], role: str
) -> str:
    """Write the job's script and put its line in the crontab (replacing an earlier one)."""
    script = script_file(host.root, job)
    host.mkdir(script.parent)
    host.mkdir(log_file(host.root, job).parent)
    host.write_text(
        script,
        SCRIPT.format(
            fab_task="schedule_sync_staging" if job == "sync_staging" else "upgrade_attempt",
            job=job,
            root=str(host.root),
            app=target.app_name,
            role=role,
            arguments=", ".join(repr(a) for a in arguments),
        ),
        mode=0o755,
    )
    command = f"{shlex.quote(str(script))} >> {shlex.quote(str(log_file(host.root, job)))} 2>&1"
    line = f"{when} {command} {marker(job, host.root)}"
    _edit_crontab(host, job, line)
    return line


def remove(host: Host, job: str) -> bool:
    had = entry(host, job) is not None
    if had:
        _edit_crontab(host, job, None)
    host.remove(script_file(host.root, job))
    return had


def cron_running(host: Host) -> bool:
    return host.run(["pgrep", "-x", "cron"], check=False).returncode == 0


def schedule_sync(target: Target, at: str | None, remove_it: bool = False) -> str:
    """`fab schedule_sync_staging --at=HH:MM` / `--remove`; returns what to tell the maintainer."""
    with target.connected() as host:
        if remove_it:
            if remove(host, "sync_staging"):
                return "The nightly sync_staging is removed from the host's crontab."
            return "No sync_staging was scheduled on this host."
        hour, minute = parse_at(at)
        _, new = sync.staging_password(host, None)
        line = install(
            target,
            host,
            "sync_staging",
            f"{minute} {hour} * * *",
            [
                "--production-domain",
                target.production_domain,
                "--staging-domain",
                target.staging_domain,
            ],
            "staging",
        )
        said = [
            f"sync_staging runs every day at {hour:02d}:{minute:02d} (the host's clock); "
            f"its log: {log_file(host.root, 'sync_staging')}.",
            f"crontab: {line}",
        ]
        if new:
            kept = sync.password_file(host.root)
            said.append(
                f"Staging wranglers' password (shown once): {(host.read_text(kept) or '').strip()}"
            )
        if not cron_running(host):
            said.append("warning: cron is not running on the host; the entry waits until it is.")
        return "\n".join(said)
