"""Refreshing staging from production, sanitised (`fab sync_staging`).

Everything is prepared beside the running staging release, in its `sync/` directory, and only
the last step touches what staging serves:

1. a consistent snapshot of production's database: the bulk copied without a lock, then only
   what changed under SQLite's write lock (production's writes are not held at the router; its
   SQLite writers wait for that moment, milliseconds when its WAL is in use, printed);
2. migrated to the staging release's alembic head;
3. production's rider list files mirrored with rsync into the host's mirror (never served);
4. sanitised by the staging release's own code (`python -m app.sanitize`, see app/sanitize/):
   addresses to the sink, production links to staging, wrangler passwords, secret links and
   tokens, the outbox; rider lists rewritten from the mirror under their new secret names; a
   final scan refuses if anything personal is left;
5. swapped in: staging stops, the snapshot replaces its database and rider lists wholesale (so
   rows that only staging had are gone), its mail queue starts empty (production's pending mail
   is never copied), and staging starts again.

A failure before the swap leaves staging exactly as it was. Each step is journaled before it
runs and the run's state is kept in `deploy/sync.json`, so a sync cut off during the swap is
finished by the next one.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from deploy.flows import release
from deploy.flows.release import DeployError, runtime
from deploy.flows.staging import site_url
from deploy.flows.steps import Run, Step, StepFailed, run_steps
from deploy.host import layout
from deploy.remote import file_mirror, records
from deploy.remote.file_mirror import RIDER_LISTS
from deploy.remote.hosts import Host
from deploy.remote.target import Target, TargetError

SPACE_FACTOR = 4
WORK = "sync"
STAGING_DB = "RandoPony-staging.sqlite"
PRODUCTION_DB = "RandoPony-production.sqlite"


def state_file(root: PurePosixPath) -> PurePosixPath:
    return layout.deploy_dir(root) / "sync.json"


def mirror_dir(root: PurePosixPath) -> PurePosixPath:
    """Production's files as rsync mirrors them: kept between runs so each run only transfers
    what changed; raw production data, so outside every release and never served."""
    return layout.deploy_dir(root) / "sync-mirror" / RIDER_LISTS


def password_file(root: PurePosixPath) -> PurePosixPath:
    return layout.deploy_dir(root) / "staging-wrangler-password"


def sink_key_file(root: PurePosixPath) -> PurePosixPath:
    """The host's key for sink addresses: outside every release, so staging cannot read it and
    hash guesses of production's addresses against what it holds."""
    return layout.deploy_dir(root) / "sink-key"


def ensure_sink_key(host: Host) -> PurePosixPath:
    """Made once per host and kept, so a wrangler's staging login stays the same across
    refreshes; 0400 and never printed."""
    path = sink_key_file(host.root)
    if not (host.read_text(path) or "").strip():
        host.write_text(path, secrets.token_hex(32) + "\n", mode=0o400)
    host.chmod(path, 0o400)
    return path


@dataclass
class Sync(Run):
    """What the steps share; saved on the host after each, so a sync cut off in its swap is
    finished by the next one."""

    staging: str
    production: str
    wrangler_password: str
    figures: dict = field(default_factory=dict)

    @property
    def task(self) -> str:
        return "sync_staging"

    @property
    def subject(self) -> str:
        return self.staging

    def state_file(self) -> PurePosixPath:
        return state_file(self.host.root)

    def state(self) -> dict:
        return {"staging": self.staging, "production": self.production, "figures": self.figures}

    def restore(self, state: dict) -> None:
        super().restore(state)
        self.figures = dict(state.get("figures", {}))

    def crash_names(self, boundary: str) -> tuple[str, ...]:
        return (f"sync:{boundary}",)

    @property
    def staging_dir(self) -> PurePosixPath:
        return layout.release_dir(self.host.root, self.target.app_name, self.staging)

    @property
    def production_dir(self) -> PurePosixPath:
        return layout.release_dir(self.host.root, self.target.app_name, self.production)

    @property
    def work(self) -> PurePosixPath:
        return self.staging_dir / WORK

    @property
    def work_db(self) -> PurePosixPath:
        return self.work / STAGING_DB


# The steps, in order.


def prepare_work(s: Sync) -> None:
    """A clean work directory: what a run cut off before the swap left is not trusted."""
    s.host.remove(s.work)
    s.host.mkdir(s.work, mode=0o700)


def copy_database(s: Sync) -> None:
    source = str(s.production_dir / PRODUCTION_DB)
    copied = {}
    for options in (("--precopy",), ()):
        answer = s.host.run(
            layout.release_program(
                s.staging_dir, "randopony-db-copy", source, str(s.work_db), *options
            ),
            cwd=s.staging_dir,
            check=False,
        )
        copied = json.loads((answer.stdout.strip().splitlines() or ["{}"])[-1])
        if answer.returncode != 0:
            raise DeployError(f"copying production's database failed: {copied.get('error')}")
    s.figures.update(
        database_bytes=int(copied.get("db_bytes", 0)) + int(copied.get("wal_bytes", 0)),
        production_lock_seconds=round(float(copied.get("lock_seconds", 0)), 3),
    )
    s.target.echo(
        f"  {s.figures['database_bytes'] / 1e6:.1f} MB, consistent as of one instant; "
        f"production's writes waited {s.figures['production_lock_seconds'] * 1000:.0f} ms"
    )


def migrate_copy(s: Sync) -> None:
    """Production may run older code than staging: the copy follows staging's migrations. A copy
    newer than staging's code cannot go down with staging's scripts: refused, staging as it was."""
    answer = release.alembic(
        s.host, s.staging_dir, "staging", "upgrade", "head", database=s.work_db, check=False
    )
    said = answer.stdout + answer.stderr
    if answer.returncode != 0:
        unknown = re.search(r"Can't locate revision identified by '([^']+)'", said)
        if unknown:
            raise DeployError(
                f"production's database is at revision {unknown.group(1)}, which staging "
                f"{s.staging} does not have: deploy code at least as new as production's to "
                "staging first"
            )
        raise DeployError(f"migrating the copy failed: {said.strip()[-1500:]}")
    s.target.echo("  " + ("; ".join(release.upgrades_ran(answer)) or "already at staging's head"))


def mirror_files(s: Sync) -> None:
    source = s.production_dir / RIDER_LISTS
    mirror = mirror_dir(s.host.root)
    s.host.mkdir(mirror, mode=0o700)
    if not s.host.is_dir(source):
        s.host.remove(mirror)
        s.host.mkdir(mirror, mode=0o700)
        s.figures.update(mirrored_bytes=0, mirrored_files=0)
        s.target.echo("  production has no rider list files")
        return
    stats = file_mirror.mirror(s.host, source, mirror)
    s.figures.update(mirrored_bytes=stats["sent"], mirrored_files=stats["files"])
    s.target.echo(
        f"  {stats['files']} file(s), {stats['sent'] / 1e3:.1f} kB transferred of "
        f"{stats['total'] / 1e3:.1f} kB (unchanged files are not)"
    )


def sanitize(s: Sync) -> None:
    answer = s.host.run(
        [
            str(s.staging_dir / layout.ENV / "bin" / "python"),
            "-m",
            "app.sanitize",
            layout.ini_name("staging"),
            "--production-domain",
            s.target.production_domain,
            "--staging-domain",
            s.target.staging_domain,
            "--rider-lists-from",
            str(mirror_dir(s.host.root)),
            "--rider-lists-to",
            str(s.work / RIDER_LISTS),
            "--sink-key-file",
            str(ensure_sink_key(s.host)),
        ],
        cwd=s.staging_dir,
        env={
            "RANDOPONY_DB_URL": f"sqlite:///{s.work_db}",
            "RANDOPONY_WRANGLER_PASSWORD": s.wrangler_password,
            # VACUUM's temporary copy: on the disk preflight checked, not in a small /var/tmp.
            "SQLITE_TMPDIR": str(s.work),
        },
        check=False,
    )
    if answer.returncode != 0:
        raise DeployError(
            "sanitising refused, staging is unchanged: " + (answer.stderr.strip()[-2000:])
        )
    counts = json.loads(answer.stdout.strip().splitlines()[-1])
    s.figures["sanitized"] = counts
    rewritten = {k: v for k, v in counts.items() if isinstance(v, int) and v}
    s.target.echo(
        "  " + (", ".join(f"{k} {v}" for k, v in sorted(rewritten.items())) or "nothing to change")
    )


def swap_in(s: Sync) -> None:
    """The only step staging notices: stopped, its data replaced, started. Each move can run
    again, so a swap cut off half way is finished by the next sync."""
    stopped = time.monotonic()
    s.target.echo("  " + runtime(s.host, s.staging_dir, "stop-supervisor").stdout.strip())
    if s.host.exists(s.work_db):
        for name in layout.database_files("staging"):
            s.host.remove(s.staging_dir / name)  # the queue too: staging's mail starts empty
        s.host.run(["mv", "-f", "--", str(s.work_db), str(s.staging_dir / STAGING_DB)])
    if s.host.is_dir(s.work / RIDER_LISTS):
        s.host.remove(s.staging_dir / RIDER_LISTS)
        s.host.run(["mv", "--", str(s.work / RIDER_LISTS), str(s.staging_dir / RIDER_LISTS)])
    s.host.remove(s.work)
    s.target.echo("  " + runtime(s.host, s.staging_dir, "start-supervisor").stdout.strip())
    answer = runtime(s.host, s.staging_dir, "wait-up", "--timeout", "60", check=False)
    if answer.returncode != 0:
        raise DeployError(f"staging does not report healthy: {answer.stdout.strip()}")
    s.figures["staging_down_seconds"] = round(time.monotonic() - stopped, 2)
    s.target.echo(f"  staging /up: {answer.stdout.strip()}")


STEPS = (
    Step("prepare_work", f"a clean {WORK}/ in the staging release", prepare_work),
    Step(
        "copy_database",
        "consistent snapshot of production's database (production's writes are not held)",
        copy_database,
    ),
    Step("migrate_copy", "alembic upgrade head on the snapshot, with staging's code", migrate_copy),
    Step(
        "mirror_files",
        "rsync --omit-dir-times --delete of production's rider lists to the host's mirror",
        mirror_files,
    ),
    Step(
        "sanitize",
        "addresses to the sink, links to staging, passwords and secret links reset, outbox "
        "emptied, rider lists rewritten; refuses if anything personal is left",
        sanitize,
    ),
    Step(
        "swap_in",
        "staging stops; the snapshot replaces its database and rider lists; empty mail queue; "
        "staging starts",
        swap_in,
    ),
)


# Running it.


def preflight(target: Target, host: Host) -> tuple[str, str]:
    roles = records.read_roles(host)
    staging, production = roles.get("staging"), roles.get("production")
    if not staging:
        raise TargetError("the host has no staging release to refresh: run init_staging first")
    if not production:
        raise TargetError("the host has no production release yet: nothing to copy")
    if staging != target.staging_release:
        raise TargetError(
            f"the host's staging release is {staging}, the fabfile expects "
            f"{target.staging_release}: set staging_release = {staging!r}"
        )
    staging_dir = layout.release_dir(host.root, target.app_name, staging)
    production_dir = layout.release_dir(host.root, target.app_name, production)
    if not release.installed(host, staging_dir):
        raise TargetError(f"staging {staging} is not installed: run deploy_staging")
    if not host.exists(production_dir / PRODUCTION_DB):
        raise TargetError(f"production {production} has no database at {production_dir}")
    size = release.size_of(host, [production_dir / PRODUCTION_DB])
    # Measured (bench/sync.py): the snapshot and its precopy, the sanitising transaction's WAL
    # (every row is rewritten) and VACUUM's temporary copy, which goes to the work directory.
    release.check_free_space(host, SPACE_FACTOR * size, f"{SPACE_FACTOR}x production's database")
    return staging, production


def staging_password(host: Host, given: str | None) -> tuple[str, bool]:
    """The staging wranglers' password: the one given (kept from now on), else the one kept on
    the host, else a new one. Returns (password, whether it is new and must be shown)."""
    path = password_file(host.root)
    if given:
        if (host.read_text(path) or "").strip() != given:
            host.write_text(path, given + "\n", mode=0o600)
        return given, False
    kept = (host.read_text(path) or "").strip()
    if kept:
        return kept, False
    made = "-".join(secrets.token_hex(3) for _ in range(3))
    host.write_text(path, made + "\n", mode=0o600)
    return made, True


def sync_staging(target: Target, wrangler_password: str | None = None) -> dict:
    """Refresh the staging release from production; returns the summary."""
    with target.connected() as host:
        staging, production = preflight(target, host)
        # A nightly run that died must not keep the next ones out: its own stale lock is taken.
        with records.host_lock(host, "sync_staging", staging, stale_ok=True):
            return run(target, host, staging, production, wrangler_password)


def run(target: Target, host: Host, staging: str, production: str, given: str | None) -> dict:
    started = time.monotonic()
    password, new_password = staging_password(host, given)
    s = Sync(target, host, staging, production, password)
    saved = host.read_text(state_file(host.root))
    if saved:
        state = json.loads(saved)
        if "sanitize" in state.get("done", []) and state.get("staging") == staging:
            # Cut off in the swap: the sanitised snapshot is ready; only the swap is left.
            s.restore(state)
            target.echo(f"Finishing the sync of {staging} cut off after {s.done[-1]}.")
        else:
            target.echo("A sync cut off before its snapshot was ready: starting again.")
    target.echo(
        f"Refresh staging {staging} at {site_url(target, host, 'staging')}/ from production "
        f"{production} (production keeps serving):"
    )
    try:
        run_steps(s, STEPS)
    except StepFailed as failure:
        if "swap_in" not in s.done and failure.step != "swap_in":
            host.remove(s.work)
            host.remove(state_file(host.root))
            raise DeployError(
                f"{failure}\nStaging is unchanged; nothing was copied into it."
            ) from None
        raise DeployError(
            f"{failure}\nStaging may be stopped: fix the cause and run "
            "`fab sync_staging` again to finish the swap."
        ) from None
    summary = {
        "staging": staging,
        "production": production,
        "address": site_url(target, host, "staging") + "/",
        "seconds": round(time.monotonic() - started, 2),
        "steps": s.durations,
        **{k: v for k, v in s.figures.items() if k != "sanitized"},
        "rows": s.figures.get("sanitized", {}).get("rows", {}),
        "sanitized": {
            k: v for k, v in s.figures.get("sanitized", {}).items() if isinstance(v, int)
        },
        # Where the sanitiser's time went (app/sanitize/cli.py), for the benchmark and for a
        # maintainer wondering why a night's sync was slow.
        "sanitize_seconds": s.figures.get("sanitized", {}).get("seconds", {}),
        "wranglers": s.figures.get("sanitized", {}).get("wranglers", []),
    }
    records.record_event(host, "sync_staging", release=staging, **summary)
    summary["new_password"] = password if new_password else None
    return summary


def print_summary(
    summary: dict, echo: Callable[[str], None] = print, show_password: bool = True
) -> None:
    echo(
        f"Staging {summary['staging']} now holds production {summary['production']}'s data, "
        f"sanitised, at {summary['address']} ({summary['seconds']:.1f} s in all; staging was "
        f"down {summary.get('staging_down_seconds', 0):.1f} s; production's writes waited "
        f"{summary.get('production_lock_seconds', 0) * 1000:.0f} ms)."
    )
    if summary["rows"]:
        echo("Rows copied per table:")
        for table, count in sorted(summary["rows"].items()):
            echo(f"  {table:<28} {count:>9,}")
    changed = {k: v for k, v in summary["sanitized"].items() if v}
    if changed:
        echo("Sanitised: " + ", ".join(f"{k} {v:,}" for k, v in sorted(changed.items())))
    echo(
        f"Database {summary.get('database_bytes', 0) / 1e6:.1f} MB copied; rider lists: "
        f"{summary.get('mirrored_files', 0)} file(s), "
        f"{summary.get('mirrored_bytes', 0) / 1e3:.1f} kB mirrored."
    )
    logins = ", ".join(summary["wranglers"]) or "none"
    if summary.get("new_password") and not show_password:
        echo(
            f"Staging wranglers log in as {logins} with a new staging password, kept on the "
            "host in deploy/staging-wrangler-password."
        )
    elif summary.get("new_password"):
        echo(
            f"Staging wranglers log in as {logins} with the new staging password "
            f"{summary['new_password']} (shown once; set RANDOPONY_WRANGLER_PASSWORD to choose "
            "another)."
        )
    else:
        echo(f"Staging wranglers log in as {logins} with the staging password.")
