"""Start, stop, restart and look at a release's app and supervisord, by role: the tasks the seed
guide lists (start_app --release=staging, tail_staging_celery_log, ps, releases...)."""

from __future__ import annotations

import json
import sys

from deploy.flows.release import DeployError, installed, read_json, runtime
from deploy.host import layout
from deploy.remote import records
from deploy.remote.hosts import Host
from deploy.remote.target import Target, TargetError


def release_for_role(target: Target, host: Host, role: str) -> str:
    """The release playing a role, from the host's records; the fabfile's value must agree."""
    try:
        layout.role(role)
    except layout.InvalidName as error:
        raise TargetError(str(error)) from None
    roles = records.read_roles(host)
    release = roles.get(role)
    if release is None:
        raise TargetError(f"there is no {role} release on {host.description}")
    expected = target.staging_release if role == "staging" else target.production_release
    if expected and expected != release:
        raise TargetError(
            f"the host's {role} release is {release}, but the fabfile says {expected}: "
            f"set {role}_release = {release!r} (the host keeps the truth)"
        )
    return release


def control(target: Target, role: str, *command: str) -> str:
    with target.connected() as host:
        release = release_for_role(target, host, role)
        directory = layout.release_dir(host.root, target.app_name, release)
        result = runtime(host, directory, *command, check=False)
        if result.returncode not in (0, 3):
            raise DeployError((result.stderr or result.stdout).strip())
        return result.stdout.strip()


def start_app(target, role):
    return control(target, role, "start-app")


def stop_app(target, role):
    return control(target, role, "stop-app")


def restart_app(target, role):
    return control(target, role, "stop-app") + "\n" + control(target, role, "start-app")


def start_supervisor(target, role):
    return control(target, role, "start-supervisor")


def stop_supervisor(target, role):
    return control(target, role, "stop-supervisor")


def restart_supervisor(target, role):
    return (
        control(target, role, "stop-supervisor") + "\n" + control(target, role, "start-supervisor")
    )


def tail(target, role, log, lines=50):
    return control(target, role, "tail", log, "--lines", str(lines))


def release_rows(target: Target) -> list[dict]:
    """Every release directory on the host with its role, port, domain, state and history."""
    with target.connected() as host:
        roles = records.read_roles(host)
        role_of = {release: "bad" for release in roles.get("bad", [])}  # rolled back
        names = {"staging": "staging", "production": "production", "previous": "rollback target"}
        role_of.update({roles[role]: name for role, name in names.items() if roles.get(role)})
        last_event = {}
        for event in records.history(host):
            last_event[event.get("release")] = event
        webapps = host.root / "webapps"
        listing = (
            host.run(["ls", "-1", str(webapps)], check=False).stdout.split()
            if host.is_dir(webapps)
            else []
        )
        rows = []
        for name in sorted(listing):
            directory = webapps / name
            info = read_json(host, directory)
            release = info.get("release")
            if not release:
                continue
            state, crashes = "not installed", "-"
            if installed(host, directory):
                status = json.loads(runtime(host, directory, "status").stdout)
                state = programs_summary(status["programs"])
                crashes = crash_summary(status.get("crashes"))
            event = last_event.get(release, {})
            rows.append(
                {
                    "release": release,
                    "role": role_of.get(release, "-"),
                    "port": info.get("port"),
                    "domain": info.get("domain"),
                    "state": state,
                    "crashes": crashes,
                    "deployed": event.get("time", info.get("installed_at", "-")),
                    "by": event.get("by", info.get("installed_by", "-")),
                    "revision": info.get("revision", "-"),
                }
            )
        return rows


def programs_summary(programs: list[dict]) -> str:
    """'app 2/2 running, celery running': a program's processes counted together."""
    groups: dict[str, list[str]] = {}
    for program in programs:
        groups.setdefault(program.get("group") or program["name"], []).append(program["state"])
    parts = []
    for name, states in sorted(groups.items()):
        running = states.count("RUNNING")
        if len(states) == 1:
            parts.append(f"{name} {states[0].lower()}")
        elif running == len(states):
            parts.append(f"{name} {running}/{len(states)} running")
        else:
            others = ", ".join(sorted({s.lower() for s in states if s != "RUNNING"}))
            parts.append(f"{name} {running}/{len(states)} running ({others})")
    return ", ".join(parts) or "stopped"


def crash_summary(crashes: list[dict] | None) -> str:
    """'0', or how many unexpected exits and the last one; '?' for a release whose runtime
    does not count them (installed before it could)."""
    if crashes is None:
        return "?"
    if not crashes:
        return "0"
    last = crashes[-1]
    how = last["how"].removeprefix("terminated by ").removesuffix(" (core dumped)")
    return f"{len(crashes)}, last {last['time']} {last['process']} {how}"


def print_releases(rows: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Releases on the host")
    console = Console() if sys.stdout.isatty() else Console(width=200)
    columns = (
        "release",
        "role",
        "port",
        "domain",
        "state",
        "crashes",
        "deployed",
        "by",
        "revision",
    )
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*(str(row[c]) for c in columns))
    console.print(table)
