"""Removing old releases: their directories, and their apps and websites on the hosting panel.

Capistrano's rule: the release in production and the rollback target are never removed. Neither
is the staging release, a release the fabfile names, nor one whose website serves the production
domain; and nothing is removed while a promotion is unfinished (`deploy/promotion.json`). Of the
other releases the `keep` newest stay. Each removal is journaled on the host before it runs, and
running it again after a failure finishes the job.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import PurePosixPath

from deploy.flows.staging import DeployError, read_release_json, runtime
from deploy.host import layout
from deploy.remote import records
from deploy.remote.hosts import Host, HostError, check_under_root
from deploy.remote.panel_client import HostingAPI, HostingError, Website
from deploy.remote.target import Target, TargetError, hosting_session

WHOLE_NUMBER = re.compile(r"^[0-9]{1,4}$")


@dataclass(frozen=True)
class Release:
    """A release directory on the host, as cleanup sees it."""

    name: str
    directory: PurePosixPath
    age: float  # seconds since the epoch: installed_at, else the directory's mtime
    installed: bool  # it has a virtualenv (and so maybe a supervisord to stop)
    when: str  # what `age` is, for the plan

    @property
    def newness(self) -> tuple[float, str]:
        return (self.age, self.name)


@dataclass
class Plan:
    stay: dict[str, str] = field(default_factory=dict)  # release -> why it stays
    remove: list[str] = field(default_factory=list)  # oldest first
    ignored: list[str] = field(default_factory=list)  # directories that are not releases


def keep_count(keep) -> int:
    """`--keep` as it comes from the command line (a string) or from code (an int)."""
    if isinstance(keep, bool) or not WHOLE_NUMBER.fullmatch(str(keep).strip()):
        raise TargetError(
            f"--keep must be a whole number of releases, 0 or more, not {keep!r}; nothing changed"
        )
    return int(str(keep).strip())


def choose(
    releases: list[Release],
    roles: dict,
    keep: int,
    protected: dict[str, str] | None = None,
) -> Plan:
    """Which releases stay and why, and which go. `protected`: more releases that stay, with
    the reason (named in the fabfile, serving the production domain...)."""
    plan = Plan()
    bad = set(roles.get("bad") or [])
    reasons = {}
    if roles.get("production"):
        reasons[roles["production"]] = "production"
    if roles.get("previous") and roles["previous"] not in bad:
        reasons.setdefault(roles["previous"], "rollback target")
    if roles.get("staging"):
        reasons.setdefault(roles["staging"], "staging")
    for name, why in (protected or {}).items():
        reasons.setdefault(name, why)
    candidates = []
    for release in sorted(releases, key=lambda r: r.newness, reverse=True):
        if release.name in reasons:
            plan.stay[release.name] = reasons[release.name]
        else:
            candidates.append(release)
    for number, release in enumerate(candidates, 1):
        if number <= keep:
            plan.stay[release.name] = f"kept newest ({number} of {keep}), {release.when}"
        else:
            plan.remove.append(release.name)
    plan.remove.reverse()
    return plan


def interrupted_promotion(host: Host) -> None:
    """deploy.flows.promote's state file exists only while a promotion is unfinished; while it does,
    which release is which is not settled, so nothing is removed."""
    text = host.read_text(layout.deploy_dir(host.root) / "promotion.json")
    if text is None:
        return
    try:
        state = json.loads(text)
    except ValueError:
        state = {}
    raise TargetError(
        f"a promotion of {state.get('new', '?')} (replacing {state.get('old') or 'nothing'}) "
        "was interrupted: finish it with `fab promote_staging_to_production --resume` or undo "
        "it with `fab rollback_production` before cleaning up; nothing changed"
    )


def release_directories(target: Target, host: Host) -> tuple[list[Release], list[str]]:
    """The release directories of this app under webapps/, and the names of directories that
    look like this app's but are not releases (left alone)."""
    webapps = host.root / "webapps"
    if not host.is_dir(webapps):
        return [], []
    listing = host.run(["ls", "-1", "--", str(webapps)]).stdout.split()
    releases, ignored = [], []
    for entry in sorted(listing):
        if not entry.startswith(target.app_name):
            continue  # another app's directory
        directory = webapps / entry
        info = read_release_json(host, directory) if host.is_dir(directory) else {}
        name = info.get("release")
        try:
            is_release = bool(name) and target.webapp(name) == entry
        except layout.InvalidName:
            is_release = False
        if not is_release:
            ignored.append(entry)
            continue
        installed = host.exists(directory / layout.ENV / "bin" / "python")
        age, when = _age(host, directory, info)
        releases.append(Release(name, directory, age, installed, when))
    return releases, ignored


def _age(host: Host, directory: PurePosixPath, info: dict) -> tuple[float, str]:
    installed_at = info.get("installed_at")
    if installed_at:
        try:
            return datetime.fromisoformat(installed_at).timestamp(), f"installed {installed_at}"
        except ValueError:
            pass
    mtime = int(host.run(["stat", "-c", "%Y", "--", str(directory)]).stdout.strip() or 0)
    return float(mtime), f"directory changed {datetime.fromtimestamp(mtime).isoformat()}"


def protected_by_panel(
    target: Target, releases: list[Release], websites: list[Website]
) -> dict[str, str]:
    """Releases whose website serves the production domain, or whose app another website
    mounts: removing them would break what the router serves."""
    reasons = {}
    for release in releases:
        name = target.webapp(release.name)
        for site in websites:
            mounts = {app for app, _ in site.website_apps}
            if (site.name == name or name in mounts) and (
                target.production_domain in site.subdomains
            ):
                reasons[release.name] = f"website {site.name} serves {target.production_domain}"
            elif site.name != name and name in mounts:
                reasons.setdefault(release.name, f"its app is mounted by website {site.name}")
    return reasons


def make_plan(target: Target, host: Host, api: HostingAPI, keep: int) -> Plan:
    interrupted_promotion(host)
    releases, ignored = release_directories(target, host)
    protected = protected_by_panel(target, releases, api.list_websites())
    for name, value in (
        ("production_release", target.production_release),
        ("staging_release", target.staging_release),
    ):
        if value:
            protected.setdefault(value, f"the fabfile's {name}")
    plan = choose(releases, records.read_roles(host), keep, protected)
    plan.ignored = ignored
    return plan


def show(target: Target, host: Host, plan: Plan) -> None:
    target.echo(f"Releases of {target.app_name} on {host.description}:")
    for name, why in sorted(plan.stay.items()):
        target.echo(f"  stays  {name}: {why}")
    for name in plan.remove:
        target.echo(f"  goes   {name}: directory, app and website {target.webapp(name)}")
    for entry in plan.ignored:
        target.echo(f"  (webapps/{entry} is not a release directory: left alone)")


def amount(size: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} bytes"


def remove_release(
    target: Target, host: Host, api: HostingAPI, release: str, journal: records.Journal
) -> int:
    """Stop, detach, delete, remove; each part skipped when already done. Returns the bytes
    the directory held (du -sb; files hard-linked elsewhere are counted too)."""
    directory = check_under_root(host.root, layout.release_dir(host.root, target.app_name, release))
    name = target.webapp(release)
    if host.exists(directory / layout.ENV / "bin" / "python"):
        with journal.step("stop_supervisor"):
            answer = runtime(host, directory, "stop-supervisor", check=False)
            said = (answer.stdout or answer.stderr).strip()
            if answer.returncode != 0 and api.app(name) is not None and api.app_answers(name):
                raise DeployError(f"{release} still answers and did not stop: {said}")
            target.echo(f"  {said or 'supervisord: no answer'}")
    site = api.website(name)
    if site is not None:
        if target.production_domain in site.subdomains:
            raise DeployError(f"website {name} serves {target.production_domain}; it stays")
        with journal.step("delete_website"):
            api.delete_website(name, site.ip)
        target.echo(f"  website {name} deleted ({', '.join(site.subdomains) or 'no domains'})")
    if api.app(name) is not None:
        with journal.step("delete_app"):
            api.delete_app(name)
        target.echo(f"  app {name} deleted")
    size = 0
    if host.exists(directory):
        size = int(host.run(["du", "-sb", "--", str(directory)]).stdout.split()[0])
        with journal.step("remove_directory"):
            host.remove(directory)  # a tree, locally and over SSH; never the host root
        target.echo(f"  {directory} removed")
    return size


def cleanup_releases(
    target: Target,
    *,
    keep=2,
    yes: bool = False,
    confirm: Callable[[str], bool] | None = None,
    password: str | None = None,
) -> dict:
    keep = keep_count(keep)
    target.checked()
    host = target.connect()
    try:
        interrupted_promotion(host)
        with hosting_session(target, host, password) as api:
            plan = make_plan(target, host, api, keep)
            show(target, host, plan)
            kept = sorted(plan.stay)
            if not plan.remove:
                target.echo("Nothing to remove.")
                return {"removed": [], "kept": kept, "freed_bytes": 0}
            if not yes and not (confirm and confirm("Remove them?")):
                raise TargetError("not confirmed; nothing changed")
            with records.host_lock(host, "cleanup_releases", ",".join(plan.remove)):
                # Another operation may have run while the question waited: plan again.
                if make_plan(target, host, api, keep).remove != plan.remove:
                    raise TargetError(
                        "the host's releases changed since the plan was shown; nothing changed: "
                        "run cleanup_releases again"
                    )
                return _remove(target, host, api, plan.remove, kept)
    finally:
        host.close()


def _remove(
    target: Target, host: Host, api: HostingAPI, releases: list[str], kept: list[str]
) -> dict:
    removed: list[str] = []
    freed = 0
    started = time.monotonic()
    for release in releases:
        target.echo(f"→ removing {release} ({len(removed) + 1} of {len(releases)})")
        release_started = time.monotonic()
        try:
            size = remove_release(
                target, host, api, release, records.Journal(host, "cleanup_releases", release)
            )
        except (HostError, HostingError, DeployError, TargetError) as error:
            target.echo(f"✗ {release} failed after {time.monotonic() - release_started:.1f} s")
            records.record_event(
                host,
                "cleanup_releases",
                removed=removed,
                kept=kept,
                freed_bytes=freed,
                failed=release,
                error=str(error)[:2000],
            )
            done = f"removed so far: {', '.join(removed)}. " if removed else ""
            raise DeployError(
                f"removing {release} failed: {error}\n{done}Fix the cause, then run "
                "`fab cleanup_releases` again: it picks up where this stopped."
            ) from None
        removed.append(release)
        freed += size
        target.echo(
            f"✓ {release} removed: {amount(size)} freed "
            f"({time.monotonic() - release_started:.1f} s)"
        )
    seconds = round(time.monotonic() - started, 2)
    records.record_event(
        host,
        "cleanup_releases",
        removed=removed,
        kept=kept,
        freed_bytes=freed,
        seconds=seconds,
    )
    target.echo(
        f"Removed {len(removed)} release(s) ({', '.join(removed)}), {amount(freed)} freed "
        f"in {seconds:.1f} s; kept {', '.join(kept) or 'none'}."
    )
    return {"removed": removed, "kept": kept, "freed_bytes": freed}
