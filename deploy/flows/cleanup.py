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

from deploy.flows import release as release_ops
from deploy.flows.promotion_decision import saved_releases
from deploy.flows.release import DeployError, runtime
from deploy.flows.steps import Run, Step, StepFailed, run_steps
from deploy.host import layout
from deploy.remote import records
from deploy.remote.hosts import Host, check_under_root
from deploy.remote.panel_client import HostingAPI, Website
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
        incoming, outgoing = saved_releases(json.loads(text))
    except (ValueError, AttributeError):
        incoming, outgoing = None, None
    raise TargetError(
        f"a promotion of {incoming or '?'} (replacing {outgoing or 'nothing'}) "
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
        info = release_ops.read_json(host, directory) if host.is_dir(directory) else {}
        name = info.get("release")
        try:
            is_release = bool(name) and target.webapp(name) == entry
        except layout.InvalidName:
            is_release = False
        if not is_release:
            ignored.append(entry)
            continue
        installed = release_ops.installed(host, directory)
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


@dataclass
class Removal(Run):
    """The removal of one release: stop, detach, delete, remove, each skipped once done, so
    running cleanup again after a failure finishes the job."""

    api: HostingAPI
    release: str
    freed: int = 0  # the bytes the directory held (du -sb; hard links elsewhere counted too)

    @property
    def task(self) -> str:
        return "cleanup_releases"

    @property
    def subject(self) -> str:
        return self.release

    @property
    def directory(self) -> PurePosixPath:
        path = layout.release_dir(self.host.root, self.target.app_name, self.release)
        return check_under_root(self.host.root, path)

    @property
    def name(self) -> str:
        return self.target.webapp(self.release)


def refuse_production(r: Removal) -> None:
    """A release whose website serves the production domain stays, whatever the plan said (the
    panel may have changed since): checked before anything of it is stopped."""
    site = r.api.website(r.name)
    if site is not None and r.target.production_domain in site.subdomains:
        raise DeployError(f"website {r.name} serves {r.target.production_domain}; it stays")


def stop_supervisor(r: Removal) -> None:
    refuse_production(r)
    answer = runtime(r.host, r.directory, "stop-supervisor", check=False)
    said = (answer.stdout or answer.stderr).strip()
    if answer.returncode != 0 and r.api.app(r.name) is not None and r.api.app_answers(r.name):
        raise DeployError(f"{r.release} still answers and did not stop: {said}")
    r.target.echo(f"  {said or 'supervisord: no answer'}")


def delete_website(r: Removal) -> None:
    refuse_production(r)
    site = r.api.website(r.name)
    r.api.delete_website(r.name, site.ip)
    r.target.echo(f"  website {r.name} deleted ({', '.join(site.subdomains) or 'no domains'})")


def delete_app(r: Removal) -> None:
    r.api.delete_app(r.name)
    r.target.echo(f"  app {r.name} deleted")


def remove_directory(r: Removal) -> None:
    r.freed = int(r.host.run(["du", "-sb", "--", str(r.directory)]).stdout.split()[0])
    r.host.remove(r.directory)  # a tree, locally and over SSH; never the host root
    r.target.echo(f"  {r.directory} removed")


REMOVAL_STEPS = (
    Step(
        "stop_supervisor",
        "stops its supervisord, app and worker",
        stop_supervisor,
        lambda r: release_ops.installed(r.host, r.directory),
    ),
    Step(
        "delete_website",
        "its website leaves the panel",
        delete_website,
        lambda r: r.api.website(r.name) is not None,
    ),
    Step("delete_app", "its app leaves the panel", delete_app, lambda r: r.api.app(r.name)),
    Step(
        "remove_directory",
        "its directory goes",
        remove_directory,
        lambda r: r.host.exists(r.directory),
    ),
)


def cleanup_releases(
    target: Target,
    *,
    keep=2,
    yes: bool = False,
    confirm: Callable[[str], bool] | None = None,
    password: str | None = None,
) -> dict:
    keep = keep_count(keep)
    with target.connected() as host:
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


def _remove(
    target: Target, host: Host, api: HostingAPI, releases: list[str], kept: list[str]
) -> dict:
    removed: list[str] = []
    freed = 0
    started = time.monotonic()
    for name in releases:
        target.echo(f"→ removing {name} ({len(removed) + 1} of {len(releases)})")
        release_started = time.monotonic()
        removal = Removal(target, host, api, name)
        try:
            run_steps(removal, REMOVAL_STEPS)
        except StepFailed as error:
            target.echo(f"✗ {name} failed after {time.monotonic() - release_started:.1f} s")
            records.record_event(
                host,
                "cleanup_releases",
                removed=removed,
                kept=kept,
                freed_bytes=freed,
                failed=name,
                error=str(error)[:2000],
            )
            done = f"removed so far: {', '.join(removed)}. " if removed else ""
            raise DeployError(
                f"removing {name} failed: {error}\n{done}Fix the cause, then run "
                "`fab cleanup_releases` again: it picks up where this stopped."
            ) from None
        removed.append(name)
        freed += removal.freed
        target.echo(
            f"✓ {name} removed: {amount(removal.freed)} freed "
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
