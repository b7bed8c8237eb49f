"""Promoting the staging release to production: the seed guide's order, made safe.

The promotion is a list of named steps. Each step can run again safely, and the host's journal
records each one's start and end before the next begins, with the promotion's state in
`deploy/promotion.json`, so a promotion killed anywhere is finished by `--resume`. Production keeps
serving throughout: reads never stop, and writes are held at the router (never refused) only while
the database is copied forward and the new release starts. The old release's files are never
changed: they are the rollback point. Large data goes ahead of the hold (databases, rider lists)
and only what changed since is copied under it. `plan()` shows the steps as a numbered checklist
with estimates, and during and after a run what is done (deploy/cutover_plan.py).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from deploy.flows import cutover_plan, release
from deploy.flows.promotion_decision import (
    RESUME,
    SHOW,
    UNDO,
    check_production,
    decide_promotion,
    decide_rollback,
    saved_releases,
)
from deploy.flows.release import (
    DeployError,
    read_release_env,
    runtime,
    write_bin_scripts,
)
from deploy.flows.staging import site_url
from deploy.flows.steps import Run, Step, StepFailed, run_steps
from deploy.host import layout, release_runtime
from deploy.remote import file_mirror, records
from deploy.remote.cutover_client import CutoverAgent
from deploy.remote.file_mirror import RIDER_LISTS
from deploy.remote.hosts import Host, HostError
from deploy.remote.panel_client import HostingAPI
from deploy.remote.target import Target, TargetError, hosting_session

# Long enough for the copy, the migration and the new release's start on a large database; the
# router lets each held request wait for its own (shorter) limit and a lapsed hold frees itself.
HOLD_SECONDS = 300
DB_NAMES = ("RandoPony-production.sqlite", "celery.sqlite")


def promotion_file(root: PurePosixPath) -> PurePosixPath:
    return layout.deploy_dir(root) / "promotion.json"


@dataclass
class Promotion(Run):
    """What the steps share; saved on the host so --resume can pick it up. A promotion and a
    rollback are both a release coming into production (`incoming`) and one going out of it
    (`outgoing`): in a rollback the incoming release is the previous one, coming back."""

    api: HostingAPI
    incoming: str | None
    outgoing: str | None
    wrangler_password: str | None = None
    demo: bool = False
    kind: str = "promote"  # or "rollback"
    # A rollback of an interrupted promotion: the steps that promotion had done.
    undo: list[str] | None = None
    held_at: float | None = None
    hold_seconds: float | None = None
    copied_bytes: int = 0
    # What the copies move (cutover_plan.measure) and each step's estimate, from the start.
    sizes: dict[str, int] = field(default_factory=dict)
    estimates: dict[str, float] = field(default_factory=dict)
    # The incoming release's alembic head, learnt before the hold: a copy already there needs no
    # alembic run.
    code_head: str | None = None
    # The host's cutover agent, from the precopy to the end of the run; a resumed run has none
    # and runs one-shot commands instead. Not saved.
    agent: CutoverAgent | None = field(default=None, repr=False)
    standby: bool | None = field(default=None, repr=False)  # see in_standby()

    @property
    def incoming_dir(self) -> PurePosixPath | None:
        if self.incoming is None:
            return None
        return self.release_dir(self.incoming)

    @property
    def outgoing_dir(self) -> PurePosixPath | None:
        if self.outgoing is None:
            return None
        return self.release_dir(self.outgoing)

    def webapp(self, release: str) -> str:
        return self.target.webapp(release)

    def release_dir(self, release: str) -> PurePosixPath:
        return layout.release_dir(self.host.root, self.target.app_name, release)

    @property
    def task(self) -> str:
        return self.kind

    @property
    def subject(self) -> str | None:
        return self.incoming or self.outgoing

    def state_file(self) -> PurePosixPath:
        return promotion_file(self.host.root)

    def state(self) -> dict:
        return {
            "kind": self.kind,
            "undo": self.undo,
            "incoming": self.incoming,
            "outgoing": self.outgoing,
            "demo": self.demo,
            "hold_seconds": self.hold_seconds,
            "copied_bytes": self.copied_bytes,
            "sizes": self.sizes,
            "estimates": self.estimates,
            "code_head": self.code_head,
        }

    def restore(self, state: dict) -> None:
        super().restore(state)
        self.copied_bytes = state.get("copied_bytes", 0)
        self.hold_seconds = state.get("hold_seconds")
        self.sizes = state.get("sizes") or {}
        self.estimates = state.get("estimates") or {}
        self.code_head = state.get("code_head")

    def crash_names(self, boundary: str) -> tuple[str, ...]:
        # A bare step name means the promotion's ("hold_writes" is "promote:hold_writes").
        if self.kind == "promote":
            return (f"promote:{boundary}", boundary)
        return (f"{self.kind}:{boundary}",)

    def before(self, step: Step) -> None:
        if step.name == "switch_domain" and "hold_writes" in self.done and self.held_at is None:
            self.held_at = time.monotonic()  # resumed under a hold: count from here


# The steps, in order.

# Staging's databases, credentials and rider lists, until the promotion is recorded.
ASIDE = "staging-aside"


def stop_staging(p: Promotion) -> None:
    p.target.echo("  " + runtime(p.host, p.incoming_dir, "stop-supervisor").stdout.strip())


def prepare_release(p: Promotion) -> None:
    """Staging's data goes aside (back if the promotion is undone, deleted once it is recorded)
    and its logs go; the release now reads production.ini, and its website lets go of the
    staging domain so production's data is never shown there."""
    aside = p.incoming_dir / ASIDE
    p.host.mkdir(aside)
    # Staging's mail queue goes too: production must not send staging's mail.
    for name in layout.database_files("staging"):
        if p.host.exists(p.incoming_dir / name):
            p.host.run(["mv", "-f", "--", str(p.incoming_dir / name), str(aside / name)])
    if not p.host.exists(aside / layout.CREDENTIALS):
        credentials = p.host.read_text(p.incoming_dir / layout.CREDENTIALS) or ""
        p.host.write_text(aside / layout.CREDENTIALS, credentials, mode=0o400)
    # Staging's rider lists make room for production's; an empty folder aside if it had none,
    # so that undoing knows the lists in the release are production's.
    if not p.host.exists(aside / RIDER_LISTS):
        if p.host.exists(p.incoming_dir / RIDER_LISTS):
            p.host.run(
                ["mv", "-T", "--", str(p.incoming_dir / RIDER_LISTS), str(aside / RIDER_LISTS)]
            )
        else:
            p.host.mkdir(aside / RIDER_LISTS)
    for name in layout.LOGS.values():
        p.host.remove(p.incoming_dir / name)
    set_role(
        p.host, p.incoming_dir, p.incoming, "production", site_url(p.target, p.host, "production")
    )
    _set_website_domains(p, p.incoming, [])
    production_session_secret(p)


def set_role(host: Host, directory: PurePosixPath, name: str, role: str, url: str) -> None:
    """The release reads `role`'s ini: the link, bin/ scripts, supervisord.conf, release.json."""
    ini = layout.ini_name(role)
    host.symlink(f"{layout.SRC}/{ini}", directory / ini)
    for other in layout.ROLES:
        if other != role:
            host.remove(directory / layout.ini_name(other))
    write_bin_scripts(host, directory)
    info = release.read_json(host, directory)
    conf = release_runtime.render_conf(
        directory,
        ini,
        int(info["port"]),
        name,
        {**read_release_env(host, role), "RANDOPONY_SITE_URL": url},
        processes=release_runtime.app_processes(info),
    )
    # 0600: its environment= lines carry release.env's values (an SMTP password).
    host.write_text(directory / layout.SUPERVISORD_CONF, conf, mode=0o600)
    info["role"] = role
    release.write_json(host, directory, info)


def _set_website_domains(p: Promotion, which: str, domains: list[str]) -> None:
    name = p.webapp(which)
    ip = (p.api.list_ips() or ["127.0.0.1"])[0]
    p.api.update_website(name, ip, False, domains, [(name, "/")])
    release.update_json(p.host, p.release_dir(which), domain=domains[0] if domains else None)


def production_session_secret(p: Promotion) -> None:
    """Production's session secret, never staging's: a staging cookie must not log in on
    production. It goes forward from the old production, so a rider who opened a form on the
    old release and sends it to the new one does not find the form expired (a new secret would
    void the session and its CSRF token); the first production gets a new one. Staging's own
    secret stays aside with its other files, for an undo."""
    from app.settings import credentials_text, new_credentials, parse_credentials

    new = parse_credentials(p.host.read_text(p.incoming_dir / layout.CREDENTIALS))
    old = {}
    if p.outgoing:
        old = parse_credentials(p.host.read_text(p.outgoing_dir / layout.CREDENTIALS))
    staging = parse_credentials(p.host.read_text(p.incoming_dir / ASIDE / layout.CREDENTIALS))
    secret = old.get("session_secret")
    if not secret:
        if new.get("session_secret") not in (None, "", staging.get("session_secret")):
            return  # already production's own (a resumed promotion)
        secret = new_credentials()["session_secret"]
    if new.get("session_secret") == secret:
        return
    new["session_secret"] = secret
    p.host.write_text(p.incoming_dir / layout.CREDENTIALS, credentials_text(new), mode=0o400)


def init_production_db(p: Promotion) -> None:
    release.initialize_db(
        p.host,
        p.incoming_dir,
        "production",
        p.target.wrangler_email,
        p.wrangler_password,
        p.demo,
    )


def stop_old_worker(p: Promotion) -> None:
    """Before the hold: its queue is carried forward, so mail queued from now on is sent once,
    by the new release's worker."""
    p.target.echo("  " + runtime(p.host, p.outgoing_dir, "stop-worker").stdout.strip())


def hold_writes(p: Promotion) -> None:
    # From the call: a write arriving while those under way finish is held as long as any.
    p.held_at = time.monotonic()
    domains = p.api.hold_writes(p.webapp(p.outgoing), HOLD_SECONDS)
    waited = time.monotonic() - p.held_at
    p.target.echo(
        f"  writes to {', '.join(domains)} held; reads go on; writes under way finished "
        f"({waited:.2f} s)"
    )


def runner_dir(p: Promotion) -> PurePosixPath:
    """The release whose code copies and migrates: the newer one, which knows both schemas."""
    return p.incoming_dir if p.kind == "promote" else p.outgoing_dir


def open_agent(p: Promotion) -> CutoverAgent | None:
    if p.agent is None:
        p.agent = CutoverAgent.start(p.host, runner_dir(p))
    return p.agent


def close_agent(p: Promotion) -> None:
    if p.agent is not None:
        agent, p.agent = p.agent, None
        agent.close()


def in_standby(p: Promotion) -> bool:
    """Whether the incoming app starts ahead of the hold, in standby (app/standby.py)."""
    if p.standby is None:
        p.standby = release.standby_capable(p.host, p.incoming_dir)
    return p.standby


def start_standby(p: Promotion) -> None:
    """The incoming app starts now, so the hold does not wait for Python to start. It loads,
    answers 503, and opens no database until `start_new_release` lets it."""
    if not in_standby(p):
        p.target.echo(f"  {p.incoming} has no standby: its app starts under the hold")
        return
    said = runtime(
        p.host, p.incoming_dir, "start-supervisor", "--app-only", "--standby", check=False
    )
    if said.returncode != 0:
        raise DeployError(f"the {p.incoming} app does not start: {said.stderr.strip()}")
    answer = runtime(p.host, p.incoming_dir, "wait-up", "--standby", "--timeout", "60", check=False)
    if answer.returncode != 0:
        raise DeployError(f"the {p.incoming} app does not answer: {answer.stdout.strip()}")
    p.target.echo(f"  {said.stdout.strip()}; waiting in standby")


def _db_copy(p: Promotion, name: str, *options: str) -> dict:
    """The database copier on the host, from the outgoing release's directory into the incoming
    one's, run by the newer release's code (`runner_dir`), as a command of its own."""
    runner = runner_dir(p)
    source, destination = str(p.outgoing_dir / name), str(p.incoming_dir / name)
    # Run from the release's directory: a legacy `-m` imports from the working directory first.
    answer = p.host.run(
        layout.release_program(runner, "randopony-db-copy", source, destination, *options),
        cwd=runner,
    )
    return json.loads(answer.stdout.strip().splitlines()[-1])


def _pairs(p: Promotion) -> list[list[str]]:
    return [
        [str(p.outgoing_dir / name), str(p.incoming_dir / name)]
        for name in DB_NAMES
        if p.host.exists(p.outgoing_dir / name)
    ]


def precopy_databases(p: Promotion) -> None:
    """The bulk of the data, before writes are held, so the hold copies only what changed; and
    the incoming release's alembic head, so the hold runs no alembic when there is nothing to
    migrate. The cutover agent holds a read on each source from its precopy to its copy, so the
    copy under the hold is the WAL alone (deploy/host/db_copy.py)."""
    agent = open_agent(p)
    ini = str(p.incoming_dir / layout.ini_name("production"))
    if agent is not None:
        p.code_head = agent.ask("heads", ini=ini)[0]
        copies = agent.ask("precopy", pairs=_pairs(p))
    else:
        p.code_head = release.alembic_heads(p.host, p.incoming_dir, "production")[0]
        copies = [_db_copy(p, PurePosixPath(dst).name, "--precopy") for _, dst in _pairs(p)]
    for copied in copies:
        name = PurePosixPath(copied["src"]).name
        p.target.echo(f"  {name}: {copied.get('bytes_copied', 0) / 1e6:.1f} MB ahead of the hold")


def copy_databases(p: Promotion) -> None:
    total = 0
    if p.agent is not None:
        copies = p.agent.ask("copy", pairs=_pairs(p))
    else:
        copies = [_db_copy(p, PurePosixPath(dst).name) for _, dst in _pairs(p)]
    for copied in copies:
        name = PurePosixPath(copied["dst"]).name
        total += int(copied.get("db_bytes", 0)) + int(copied.get("wal_bytes", 0))
        p.target.echo(
            f"  {name}: consistent copy ({copied.get('mode')}), "
            f"{copied.get('bytes_under_lock', 0) / 1e6:.1f} MB under the lock, "
            f"{copied.get('seconds', 0):.2f} s"
        )
    p.copied_bytes = total


def _rsync_files(p: Promotion, when: str) -> None:
    """The outgoing release's rider lists into the incoming one's, as rsync sees them: every
    file the first time, only what changed since the next. The outgoing release's files are only
    read."""
    source = p.outgoing_dir / RIDER_LISTS
    if not p.host.is_dir(source):
        p.target.echo("  no rider lists to carry")
        return
    try:
        stats = file_mirror.mirror(p.host, source, p.incoming_dir / RIDER_LISTS)
    except HostError as error:
        raise DeployError(str(error)) from None
    p.target.echo(
        f"  rider lists: {stats['files']} file(s), {stats['sent'] / 1e6:.2f} MB transferred "
        f"{when} (of {stats['total'] / 1e6:.2f} MB)"
    )


def precopy_files(p: Promotion) -> None:
    _rsync_files(p, "ahead of the hold")


def copy_files(p: Promotion) -> None:
    _rsync_files(p, "under the hold")


REVISION = (
    "import sqlite3, sys; "
    "print(sqlite3.connect(sys.argv[1]).execute('SELECT version_num FROM alembic_version')"
    ".fetchone()[0])"
)


def copy_revision(p: Promotion) -> str | None:
    """The alembic revision of the incoming release's copy of the database."""
    database = p.incoming_dir / DB_NAMES[0]
    if p.agent is not None:
        return p.agent.ask("revision", database=str(database))
    python = str(runner_dir(p) / layout.ENV / "bin" / "python")
    return p.host.run([python, "-c", REVISION, str(database)], check=False).stdout.strip() or None


def migrate_database(p: Promotion) -> None:
    if p.code_head:
        current = copy_revision(p)
        if current == p.code_head:
            p.target.echo(f"  already at the code's head {current}: no alembic run")
            return
    if p.agent is not None:
        ini = str(p.incoming_dir / layout.ini_name("production"))
        database = str(p.incoming_dir / DB_NAMES[0])
        ran = p.agent.ask(
            "migrate", ini=ini, database=database, command="upgrade", revision="head"
        )["ran"]
    else:
        answer = release.alembic(p.host, p.incoming_dir, "production", "upgrade", "head")
        ran = release.upgrades_ran(answer)
    p.target.echo("  " + ("; ".join(ran) or "already at the code's head"))


def start_new_release(p: Promotion) -> None:
    """The app only: the worker starts once the release serves production, so until then
    nothing but the migration has touched the copied data, and undoing needs no copy back. An
    app waiting in standby (start_standby) only has to open its database."""
    if p.outgoing is not None and in_standby(p):
        if p.agent is not None:
            answer = p.agent.ask("activate", release_dir=str(p.incoming_dir), timeout=60)
        else:
            said = runtime(p.host, p.incoming_dir, "activate", "--timeout", "60", check=False)
            answer = json.loads(said.stdout.strip().splitlines()[-1] or "{}")
        if answer.get("http") != 200:
            raise DeployError(f"the new release does not report healthy: {json.dumps(answer)}")
        p.target.echo(f"  out of standby; /up: {json.dumps(answer)}")
        return
    said = runtime(p.host, p.incoming_dir, "start-supervisor", "--app-only", check=False)
    if said.returncode != 0:
        raise DeployError(f"the new release does not start: {said.stderr.strip()}")
    p.target.echo("  " + said.stdout.strip())
    answer = runtime(p.host, p.incoming_dir, "wait-up", "--timeout", "60", check=False)
    if answer.returncode != 0:
        raise DeployError(f"the new release does not report healthy: {answer.stdout.strip()}")
    p.target.echo(f"  /up: {answer.stdout.strip()}")


def switch_domain(p: Promotion) -> None:
    """Detach the production domain from the old website, attach it to the new one, then let the
    held writes go, to the new release. Between the two calls the router holds the domain's
    requests instead of failing them."""
    domain = p.target.production_domain
    if p.outgoing:
        old_site = p.api.website(p.webapp(p.outgoing))
        if old_site is not None and domain in old_site.subdomains:
            rest = [d for d in old_site.subdomains if d != domain]
            _set_website_domains(p, p.outgoing, rest)
    _set_website_domains(p, p.incoming, [domain])
    if p.outgoing:
        p.api.release_writes(p.webapp(p.outgoing))
        if p.held_at is not None:
            p.hold_seconds = round(time.monotonic() - p.held_at, 3)
    p.target.echo(f"  http://{domain}/ now served by {p.webapp(p.incoming)}")


def start_new_worker(p: Promotion) -> None:
    p.target.echo("  " + runtime(p.host, p.incoming_dir, "start-worker").stdout.strip())


def stop_old_release(p: Promotion) -> None:
    left = p.api.wait_app_idle(p.webapp(p.outgoing), 30)
    if left:
        p.target.echo(f"  {left} request(s) still under way at the old release after 30 s")
    p.target.echo("  " + runtime(p.host, p.outgoing_dir, "stop-supervisor").stdout.strip())


def record_promotion(p: Promotion) -> None:
    roles = records.read_roles(p.host)
    roles.update(production=p.incoming, previous=p.outgoing, staging=None)
    records.write_roles(p.host, roles)
    p.host.remove(p.incoming_dir / ASIDE)
    records.record_event(p.host, "promote", release=p.incoming, previous=p.outgoing, **_figures(p))


def _figures(p: Promotion) -> dict:
    return {
        # Where browsers reach it: the router's port, or the public scheme and port.
        "address": site_url(p.target, p.host, "production") + "/",
        "write_hold_seconds": p.hold_seconds,
        "copied_bytes": p.copied_bytes,
        "steps": p.durations,
        "seconds": round(sum(p.durations.values()), 2),
        "sizes": p.sizes,
        "estimates": p.estimates,
    }


def first(p: Promotion) -> bool:
    return p.outgoing is None


def over_old(p: Promotion) -> bool:
    return p.outgoing is not None


STEPS = (
    Step("stop_staging", "stops the staging release's app and worker", stop_staging),
    Step(
        "prepare_release",
        "staging's databases set aside and its logs deleted; production.ini replaces "
        "staging.ini; the staging domain is detached",
        prepare_release,
    ),
    Step("init_production_db", "creates the production database", init_production_db, first),
    Step(
        "start_standby",
        "starts the new app ahead of the hold, in standby: it opens no data yet",
        start_standby,
        over_old,
    ),
    Step(
        "precopy_databases",
        "copies the bulk of production's data ahead of the hold (no lock)",
        precopy_databases,
        over_old,
    ),
    Step(
        "precopy_files",
        "copies production's rider lists ahead of the hold (rsync)",
        precopy_files,
        over_old,
    ),
    Step(
        "stop_old_worker",
        "the old worker finishes its task and stops; mail queues",
        stop_old_worker,
        over_old,
    ),
    Step(
        "hold_writes", "the router holds writes to production (reads go on)", hold_writes, over_old
    ),
    Step(
        "copy_databases",
        "copies production's database and mail queue into the new release",
        copy_databases,
        over_old,
    ),
    Step(
        "copy_files",
        "copies the rider lists changed since the precopy (rsync: only the diff)",
        copy_files,
        over_old,
    ),
    Step("migrate_database", "alembic upgrade head on the copy", migrate_database, over_old),
    Step(
        "start_new_release",
        "the new app opens the copied data (or starts); waits for /up",
        start_new_release,
    ),
    Step(
        "switch_domain",
        "the production domain moves to the new release; held writes go there",
        switch_domain,
    ),
    Step("start_new_worker", "the new release's worker sends the queued mail", start_new_worker),
    Step(
        "stop_old_release",
        "stops the old release once its requests are done",
        stop_old_release,
        over_old,
    ),
    Step(
        "record_promotion",
        "roles and history; staging's set-aside data deleted",
        record_promotion,
    ),
)


# Rolling back: the same machinery, pointed the other way. `incoming` is the release that comes
# back, `outgoing` the one that goes. After a promotion that moved the domain, registrations made
# since are kept: the current database is copied back and migrated down with the newer
# release's scripts. A promotion that never moved the domain is undone without a copy: the
# production database was never written by anything but the production release.


def switched(p: Promotion) -> bool:
    return p.undo is None or "switch_domain" in p.undo


def undoing(p: Promotion) -> bool:
    return not switched(p)


def undoing_over_previous(p: Promotion) -> bool:
    return undoing(p) and p.incoming is not None


# The previous release's own databases, set aside before a rollback's hold and deleted after it:
# replacing a large file under the hold would wait for its blocks to be freed (0.3 s per GB here).
REPLACED = ".replaced-"


def stop_previous_release(p: Promotion) -> None:
    """Its database is about to be replaced: nothing may have it open, and it is set aside."""
    p.target.echo("  " + runtime(p.host, p.incoming_dir, "stop-supervisor").stdout.strip())
    moved = []
    for name in _database_files():
        if p.host.exists(p.incoming_dir / name):
            target = p.incoming_dir / (REPLACED + name)
            p.host.run(["mv", "-f", "--", str(p.incoming_dir / name), str(target)])
            moved.append(name)
    if moved:
        p.target.echo(f"  its own data set aside until the hold is over: {', '.join(moved)}")


def _database_files() -> tuple[str, ...]:
    return (*DB_NAMES, *(name + side for name in DB_NAMES for side in ("-wal", "-shm")))


def remove_replaced(p: Promotion) -> None:
    for name in _database_files():
        p.host.remove(p.incoming_dir / (REPLACED + name))


def precopy_back(p: Promotion) -> None:
    """The bulk of the current data, before writes are held (by the current release's code)."""
    precopy_databases(p)


def copy_back(p: Promotion) -> None:
    """The current data into the previous release, copied by the newer (current) release's code."""
    copy_databases(p)


def migrate_down(p: Promotion) -> None:
    """Down to the previous release's head, with the newer release's scripts (the previous
    release's own scripts do not know the newer revisions); nothing to do when the copy is at
    that head already (the two releases share their schema)."""
    head = p.code_head or release.alembic_heads(p.host, p.incoming_dir, "production")[0]
    database = p.incoming_dir / DB_NAMES[0]
    if copy_revision(p) == head:
        p.target.echo(f"  {database.name} is at the previous release's head {head}: no alembic run")
        return
    if p.agent is not None:
        ini = str(p.outgoing_dir / layout.ini_name("production"))
        ran = p.agent.ask(
            "migrate", ini=ini, database=str(database), command="downgrade", revision=head
        )["ran"]
        p.target.echo("  " + "; ".join(ran))
    else:
        release.alembic(p.host, p.outgoing_dir, "production", "downgrade", head, database=database)
    p.target.echo(f"  {database.name} migrated down to {head}")


def stop_unpromoted_release(p: Promotion) -> None:
    p.target.echo("  " + runtime(p.host, p.outgoing_dir, "stop-supervisor").stdout.strip())


def restart_previous_worker(p: Promotion) -> None:
    p.target.echo("  " + runtime(p.host, p.incoming_dir, "start-worker").stdout.strip())


def release_held_writes(p: Promotion) -> None:
    domains = p.api.release_writes(p.webapp(p.incoming))
    p.target.echo(f"  writes to {', '.join(domains) or 'production'} go on")


def return_to_staging(p: Promotion) -> None:
    """The release that was not promoted is staging again, with staging's own data back."""
    directory, aside = p.outgoing_dir, p.outgoing_dir / ASIDE
    for name in layout.database_files("production"):
        p.host.remove(directory / name)  # a copy of production's data: not staging's to keep
    if p.host.exists(aside / RIDER_LISTS):  # else the lists there are staging's, never moved
        p.host.remove(directory / RIDER_LISTS)  # production's copy
        p.host.run(["mv", "-T", "--", str(aside / RIDER_LISTS), str(directory / RIDER_LISTS)])
    if p.host.exists(aside):
        for name in (*layout.database_files("staging"), layout.CREDENTIALS):
            if p.host.exists(aside / name):
                p.host.run(["mv", "-f", "--", str(aside / name), str(directory / name)])
        p.host.remove(aside)
    set_role(p.host, directory, p.outgoing, "staging", site_url(p.target, p.host, "staging"))
    _set_website_domains(p, p.outgoing, [p.target.staging_domain])
    p.target.echo("  " + runtime(p.host, directory, "start-supervisor").stdout.strip())
    answer = runtime(p.host, directory, "wait-up", "--timeout", "60", check=False)
    p.target.echo(f"  staging /up: {answer.stdout.strip()}")


def record_rollback(p: Promotion) -> None:
    roles = records.read_roles(p.host)
    if switched(p):
        remove_replaced(p)
        roles.update(
            production=p.incoming, previous=None, bad=sorted({*roles.get("bad", []), p.outgoing})
        )
        event = "rollback"
    else:
        roles.update(staging=p.outgoing)
        event = "promotion_undone"
    records.write_roles(p.host, roles)
    records.record_event(p.host, event, release=p.incoming, rolled_back=p.outgoing, **_figures(p))


ROLLBACK_STEPS = (
    Step(
        "stop_previous_release",
        "makes sure nothing has the previous release's database open; sets it aside",
        stop_previous_release,
        switched,
    ),
    Step(
        "start_previous_standby",
        "starts the previous app ahead of the hold, in standby: it opens no data yet",
        start_standby,
        switched,
    ),
    Step(
        "precopy_back",
        "copies the bulk of the current data ahead of the hold (no lock)",
        precopy_back,
        switched,
    ),
    Step(
        "precopy_files_back",
        "copies the current rider lists ahead of the hold (rsync)",
        precopy_files,
        switched,
    ),
    Step(
        "stop_current_worker",
        "the current worker finishes its task and stops; mail queues",
        stop_old_worker,
        switched,
    ),
    Step(
        "hold_writes",
        "the router holds writes to production (reads go on)",
        hold_writes,
        switched,
    ),
    Step(
        "copy_back",
        "copies the current database and mail queue into the previous release",
        copy_back,
        switched,
    ),
    Step(
        "copy_files_back",
        "copies the rider lists changed since the precopy (rsync: only the diff)",
        copy_files,
        switched,
    ),
    Step(
        "migrate_down",
        "alembic downgrade to the previous release's head, on that copy",
        migrate_down,
        switched,
    ),
    Step(
        "start_previous_release",
        "the previous app opens the copied data (or starts); waits for /up",
        start_new_release,
        switched,
    ),
    Step(
        "switch_domain",
        "the production domain moves back; held writes go there",
        switch_domain,
        switched,
    ),
    Step(
        "start_previous_worker",
        "the previous release's worker sends the queued mail",
        start_new_worker,
        switched,
    ),
    Step(
        "stop_current_release",
        "stops the rolled-back release once its requests are done",
        stop_old_release,
        switched,
    ),
    Step(
        "stop_unpromoted_release",
        "stops the release that was being promoted",
        stop_unpromoted_release,
        undoing,
    ),
    Step(
        "restart_previous_worker",
        "production's worker runs again and sends what queued",
        restart_previous_worker,
        undoing_over_previous,
    ),
    Step(
        "release_writes",
        "held writes go on, to production as before",
        release_held_writes,
        undoing_over_previous,
    ),
    Step(
        "return_to_staging",
        "the release is staging again, with staging's data; production's copy is deleted",
        return_to_staging,
        undoing,
    ),
    Step("record_rollback", "roles and history", record_rollback),
)


def _steps(p: Promotion) -> tuple[Step, ...]:
    return STEPS if p.kind == "promote" else ROLLBACK_STEPS


def plan(p: Promotion, current: tuple[str, str] | None = None) -> list[str]:
    """The numbered checklist: each step, what it touches and its estimate; once the run has
    begun, which steps are done (with their durations), `current` (running or failed), pending."""
    if p.kind == "promote":
        where = site_url(p.target, p.host, "production")
        lines = [f"Promote {p.webapp(p.incoming)} to production at {where}/"]
        if p.outgoing:
            lines[0] += f", replacing {p.webapp(p.outgoing)}"
    elif switched(p):
        lines = [f"Roll production back from {p.webapp(p.outgoing)} to {p.webapp(p.incoming)}:"]
    else:
        lines = [
            f"Undo the interrupted promotion of {p.webapp(p.outgoing)}: production stays "
            f"{p.webapp(p.incoming) if p.incoming else 'empty'}; {p.outgoing} goes back to staging:"
        ]
    found = estimate(p)
    if p.sizes:
        lines.append(f"  On the host: {cutover_plan.describe_sizes(p.sizes)}")
    return lines + cutover_plan.render(_rows(p, current)) + [cutover_plan.legend(found)]


def estimate(p: Promotion) -> dict[str, cutover_plan.Estimate]:
    """Each step's estimate from the sizes on the host and the host's history. The first ones
    are kept (in promotion.json), so a run is measured against what was planned."""
    names = [step.name for step in _steps(p) if step.applies(p)]
    if not p.sizes and p.outgoing and any(cutover_plan.size_kind(name) for name in names):
        p.sizes = cutover_plan.measure(p.host, p.outgoing_dir, DB_NAMES, RIDER_LISTS)
    found = cutover_plan.estimates(names, p.kind, p.sizes, records.history(p.host))
    if not p.estimates:
        p.estimates = {name: value.seconds for name, value in found.items()}
    return found


def _rows(p: Promotion, current: tuple[str, str] | None = None) -> list[cutover_plan.Row]:
    # Undoing a promotion killed under its hold: writes are held until release_writes.
    holding = undoing(p) and "hold_writes" in (p.undo or [])
    return cutover_plan.rows(
        [(step.name, step.changes) for step in _steps(p) if step.applies(p)],
        p.estimates,
        done=p.done,
        durations=p.durations,
        current=current,
        holding=holding,
        sizes=p.sizes,
    )


def progress(p: Promotion, state: dict) -> list[str]:
    """The plan of a run under way (from another terminal) or interrupted: done, running (the
    journal's last step started and not finished), pending."""
    journal = p.host.run(["tail", "-n", "50", str(layout.journal(p.host.root))], check=False)
    current = cutover_plan.running_step(
        journal.stdout, p.kind, p.incoming or p.outgoing, since=state.get("updated")
    )
    holder = records.lock_holder(p.host)
    how = "`fab rollback_production --resume` finishes it"
    if p.kind == "promote":
        how = "`fab promote_staging_to_production --resume` finishes it, `fab rollback_production`"
        how += " undoes it"
    lines = plan(p, current)
    saved = f"saved {state.get('updated', '?')} by {state.get('by', '?')}"
    lock = "the lock is held" if holder else "no lock held"
    lines.insert(1, f"  Under way, or interrupted ({saved}; {lock}). If interrupted, {how}.")
    return lines


def last_run(host: Host) -> list[str]:
    """The last promotion or rollback in the host's history, measured against its plan."""
    touches = {
        "promote": {step.name: step.changes for step in STEPS},
        "rollback": {step.name: step.changes for step in ROLLBACK_STEPS},
    }
    return cutover_plan.last_run(records.history(host), touches)


def preflight(target: Target, host: Host, api: HostingAPI) -> tuple[str | None, str]:
    """Everything checked before anything changes; returns (outgoing production, incoming)."""
    roles = records.read_roles(host)
    incoming = target.staging_release
    outgoing = roles.get("production")
    if roles.get("staging") != incoming:
        raise TargetError(
            f"the host's staging release is {roles.get('staging')}, not {incoming}: "
            "set staging_release to the release to promote"
        )
    if outgoing == incoming:
        raise TargetError(f"{incoming} is production already")
    check_production(target.production_release, outgoing)
    incoming_dir = layout.release_dir(host.root, target.app_name, incoming)
    if not release.installed(host, incoming_dir):
        raise TargetError(f"{incoming} is not installed: run init_staging and deploy_staging")
    health = runtime(host, incoming_dir, "wait-up", "--timeout", "10", check=False)
    if health.returncode != 0:
        raise TargetError(f"staging {incoming} is not healthy: {health.stdout.strip()}")
    heads = release.alembic_heads(host, incoming_dir, "staging")
    if len(heads) != 1:
        raise TargetError(f"{incoming}'s migrations have {len(heads)} heads; merge them first")
    if outgoing:
        outgoing_dir = layout.release_dir(host.root, target.app_name, outgoing)
        size = release.size_of(host, [outgoing_dir / name for name in DB_NAMES])
        release.check_free_space(host, 2 * size, "2x production's databases")
        if api.website(target.webapp(outgoing)) is None:
            raise TargetError(
                f"the production website {target.webapp(outgoing)} is not on the panel"
            )
    return outgoing, incoming


def _interrupted(host: Host) -> dict | None:
    saved = host.read_text(promotion_file(host.root))
    return json.loads(saved) if saved else None


def _saved(target: Target, host: Host, api: HostingAPI, state: dict) -> Promotion:
    """The run (under way or interrupted) that the host's promotion.json describes."""
    incoming, outgoing = saved_releases(state)
    p = Promotion(
        target,
        host,
        api,
        incoming,
        outgoing,
        kind=state.get("kind", "promote"),
        undo=state.get("undo"),
    )
    p.restore(state)
    return p


def _echo(target: Target, lines: list[str]) -> list[str]:
    for line in lines:
        target.echo(line)
    return lines


def promote(
    target: Target,
    *,
    yes: bool = False,
    plan_only: bool = False,
    resume: bool = False,
    confirm: Callable[[str], bool] | None = None,
    wrangler_password: str | None = None,
    password: str | None = None,
    demo: bool = False,
) -> dict:
    with target.connected() as host, hosting_session(target, host, password) as api:
        state = _interrupted(host)
        decision = decide_promotion(state, resume=resume, plan_only=plan_only)
        if decision.action == SHOW:
            return {"planned": _echo(target, progress(_saved(target, host, api, state), state))}
        if decision.action == RESUME:
            outgoing, incoming = decision.outgoing, decision.incoming
        else:
            try:
                outgoing, incoming = preflight(target, host, api)
            except TargetError as refused:
                if not plan_only:
                    raise
                return {"planned": _echo(target, _next_plan(target, host, api, refused))}
        p = Promotion(target, host, api, incoming, outgoing, wrangler_password, demo)
        if state:
            p.restore(state)
        lines = _echo(target, plan(p))
        if plan_only:
            return {"planned": lines}
        if not yes and not resume and not (confirm and confirm("Promote now?")):
            raise TargetError("not confirmed; nothing changed")
        with records.host_lock(host, "promote", incoming, reenter=resume):
            try:
                run(p, STEPS)
            except StepFailed as failure:
                if "switch_domain" in p.done:
                    raise DeployError(
                        f"{failure}\nProduction is served by {incoming}. Fix the cause, then "
                        "`fab promote_staging_to_production --resume` finishes the "
                        "promotion, or `fab rollback_production` undoes it."
                    ) from None
                undo_failed_promotion(p, failure)
        return {"production": incoming, "previous": outgoing, **_figures(p)}


def ready(target: Target, password: str | None = None) -> list[str]:
    """Every check a promotion makes before it changes anything, and its plan; raises
    TargetError if it would be refused (an upgrade attempt asks before it syncs staging)."""
    with target.connected() as host, hosting_session(target, host, password) as api:
        state = _interrupted(host)
        if state:
            raise TargetError(
                f"a {state.get('kind', 'promote')} of {saved_releases(state)[0]} was "
                "interrupted: finish or undo it first"
            )
        outgoing, incoming = preflight(target, host, api)
        return _echo(target, plan(Promotion(target, host, api, incoming, outgoing)))


def _next_plan(target: Target, host: Host, api: HostingAPI, refused: TargetError) -> list[str]:
    """--plan when there is nothing to promote yet (after a run, say): why, the plan of the
    next promotion over today's production, and how the last run went."""
    lines = [f"Not ready to promote: {refused}"]
    production = records.read_roles(host).get("production")
    if target.staging_release != production:
        lines += plan(Promotion(target, host, api, target.staging_release, production))
    return lines + last_run(host)


def undo_failed_promotion(p: Promotion, failure: StepFailed) -> None:
    """A step before the domain moved failed: production goes on as it was, at once, and the
    release goes back to staging to be mended."""
    p.target.echo(f"Undoing the promotion: production stays {p.outgoing or 'empty'}.")
    undo = Promotion(
        p.target,
        p.host,
        p.api,
        p.outgoing,
        p.incoming,
        kind="rollback",
        undo=list(p.done),
    )
    try:
        run(undo, ROLLBACK_STEPS)
    except StepFailed as second:
        raise DeployError(
            f"{failure}\nUndoing it failed too: {second}\nProduction is still served by "
            f"{p.outgoing or 'nothing'}. Fix that, then run `fab rollback_production --resume`."
        ) from None
    raise DeployError(
        f"{failure}\nThe promotion was undone: production is {p.outgoing or 'still empty'}, as "
        f"before, and {p.incoming} is back on staging. Fix the cause, deploy it to staging and "
        "promote again."
    )


def run(p: Promotion, steps: tuple[Step, ...]) -> None:
    """The steps by the one runner (deploy/flows/steps.py), then the run against its plan."""
    estimate(p)
    try:
        run_steps(p, steps)
    finally:
        close_agent(p)
    p.target.echo("Measured against the plan:")
    _echo(p.target, cutover_plan.render(_rows(p), p.hold_seconds))


def rollback(
    target: Target,
    *,
    yes: bool = False,
    resume: bool = False,
    confirm: Callable[[str], bool] | None = None,
    password: str | None = None,
) -> dict:
    """Undo the last promotion: a completed one (the previous release comes back, with the data
    written since), or an interrupted one (production as it was, the release back on staging)."""
    with target.connected() as host, hosting_session(target, host, password) as api:
        state = _interrupted(host)
        roles = records.read_roles(host)
        decision = decide_rollback(state, roles, target.production_release, resume=resume)
        if decision.action == RESUME:
            p = _saved(target, host, api, state)
        else:
            # Undoing an interrupted promotion replays its done steps backwards.
            undo = state.get("done", []) if decision.action == UNDO else None
            p = Promotion(
                target,
                host,
                api,
                decision.incoming,
                decision.outgoing,
                kind="rollback",
                undo=undo,
            )
        _echo(target, plan(p))
        if not yes and not resume and not (confirm and confirm("Roll back now?")):
            raise TargetError("not confirmed; nothing changed")
        # Undoing a promotion takes over the lock its dead (or failed) run left.
        takes_over = ("promote", p.outgoing) if p.undo is not None else None
        with records.host_lock(host, "rollback", p.outgoing, reenter=resume, takes_over=takes_over):
            try:
                run(p, ROLLBACK_STEPS)
            except StepFailed as failure:
                raise DeployError(
                    f"rollback {failure}\nFix the cause, then "
                    "`fab rollback_production --resume` finishes the rollback."
                ) from None
        return {
            "production": p.incoming,
            "rolled_back": p.outgoing,
            "undone": undoing(p),
            **_figures(p),
        }
