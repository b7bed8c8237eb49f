"""Promoting the staging release to production: the seed guide's order, made safe.

The promotion is a list of named steps. Each step can run again safely, and the host's journal
records each one's start and end before the next begins, with the promotion's state in
`deploy/promotion.json`, so a promotion killed anywhere is finished by `--resume`. Production keeps
serving throughout: reads never stop, and writes are held at the router (never refused) only while
the database is copied forward and the new release starts. The old release's files are never
changed: they are the rollback point.
"""

from __future__ import annotations

import configparser
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from deploy import layout, records, release_runtime
from deploy.hosting_api import HostingAPI
from deploy.hosts import Host, HostError
from deploy.staging import DeployError, read_release_json, runtime, write_bin_scripts
from deploy.target import Target, TargetError, hosting_session

# Long enough for the copy, the migration and the new release's start on a large database; the
# router lets each held request wait for its own (shorter) limit and a lapsed hold frees itself.
HOLD_SECONDS = 300
CRASH_AFTER = "RANDOPONY_TEST_CRASH_AFTER_STEP"
DB_NAMES = ("RandoPony-production.sqlite", "celery.sqlite")


def promotion_file(root: PurePosixPath) -> PurePosixPath:
    return layout.deploy_dir(root) / "promotion.json"


@dataclass
class Promotion:
    """What the steps share; saved on the host so --resume can pick it up."""

    target: Target
    host: Host
    api: HostingAPI
    new: str
    old: str | None
    wrangler_password: str | None = None
    demo: bool = False
    done: list[str] = field(default_factory=list)
    durations: dict[str, float] = field(default_factory=dict)
    held_at: float | None = None
    hold_seconds: float | None = None
    copied_bytes: int = 0

    @property
    def new_dir(self) -> PurePosixPath:
        return layout.release_dir(self.host.root, self.target.app_name, self.new)

    @property
    def old_dir(self) -> PurePosixPath | None:
        if self.old is None:
            return None
        return layout.release_dir(self.host.root, self.target.app_name, self.old)

    def webapp(self, release: str) -> str:
        return self.target.webapp(release)

    def save(self) -> None:
        state = {
            "new": self.new,
            "old": self.old,
            "demo": self.demo,
            "done": self.done,
            "durations": self.durations,
            "hold_seconds": self.hold_seconds,
            "copied_bytes": self.copied_bytes,
            "by": records.who(),
            "updated": records.now(),
        }
        self.host.write_text(promotion_file(self.host.root), json.dumps(state, indent=2) + "\n")


@dataclass(frozen=True)
class Step:
    name: str
    changes: str
    run: Callable[[Promotion], None]
    applies: Callable[[Promotion], bool] = lambda p: True


# The steps, in order.


def stop_staging(p: Promotion) -> None:
    p.target.echo("  " + runtime(p.host, p.new_dir, "stop-supervisor").stdout.strip())


def prepare_release(p: Promotion) -> None:
    """Staging's data and logs go; the release now reads production.ini."""
    # Staging's mail queue goes too: production must not send staging's mail.
    for name in layout.database_files("staging") + tuple(layout.LOGS.values()):
        p.host.remove(p.new_dir / name)
    ini = layout.ini_name("production")
    p.host.symlink(f"{layout.SRC}/{ini}", p.new_dir / ini)
    p.host.remove(p.new_dir / layout.ini_name("staging"))
    write_bin_scripts(p.host, p.new_dir)
    if p.old:
        carry_session_secret(p)
    info = read_release_json(p.host, p.new_dir)
    environment = _release_env(p.host)
    conf = release_runtime.render_conf(p.new_dir, ini, int(info["port"]), p.new, environment)
    p.host.write_text(p.new_dir / layout.SUPERVISORD_CONF, conf)
    info["role"] = "production"
    p.host.write_text(p.new_dir / layout.RELEASE_JSON, json.dumps(info, indent=2) + "\n")


def carry_session_secret(p: Promotion) -> None:
    """Production's session secret goes forward: a rider who opened a form on the old release
    and sends it to the new one must not find the form expired (a new secret would void the
    session and its CSRF token)."""
    old = _credentials(p.host.read_text(p.old_dir / layout.CREDENTIALS))
    new = _credentials(p.host.read_text(p.new_dir / layout.CREDENTIALS))
    if not old.get("session_secret") or old.get("session_secret") == new.get("session_secret"):
        return
    new["session_secret"] = old["session_secret"]
    text = "[credentials]\n" + "".join(f"{key} = {value}\n" for key, value in new.items())
    p.host.write_text(p.new_dir / layout.CREDENTIALS, text, mode=0o400)


def _credentials(text: str | None) -> dict[str, str]:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(text or "")
    return dict(parser.items("credentials")) if parser.has_section("credentials") else {}


def init_production_db(p: Promotion) -> None:
    argv = [
        str(p.new_dir / layout.ENV / "bin" / "initialize_RandoPony_db"),
        layout.ini_name("production"),
        "--wrangler-email",
        p.target.wrangler_email,
    ]
    if p.demo:
        argv.append("--demo")
    env = {"RANDOPONY_WRANGLER_PASSWORD": p.wrangler_password} if p.wrangler_password else {}
    p.host.run(argv, cwd=p.new_dir, env=env)


def stop_old_worker(p: Promotion) -> None:
    """Before the hold: its queue is carried forward, so mail queued from now on is sent once,
    by the new release's worker."""
    p.target.echo("  " + runtime(p.host, p.old_dir, "stop-worker").stdout.strip())


def hold_writes(p: Promotion) -> None:
    domains = p.api.hold_writes(p.webapp(p.old), HOLD_SECONDS)
    p.held_at = time.monotonic()
    p.target.echo(f"  writes to {', '.join(domains)} held; reads go on; writes under way finished")


def _db_copy(p: Promotion, name: str, *options: str, run_in: PurePosixPath | None = None) -> dict:
    """deploy.db_copy on the host, from the old release's directory into the new one's, run by
    the new release's code unless `run_in` names another release."""
    python = str((run_in or p.new_dir) / layout.ENV / "bin" / "python")
    source, destination = str(p.old_dir / name), str(p.new_dir / name)
    answer = p.host.run([python, "-m", "deploy.db_copy", source, destination, *options])
    return json.loads(answer.stdout.strip().splitlines()[-1])


def precopy_databases(p: Promotion) -> None:
    """The bulk of the data, before writes are held, so the hold copies only what changed."""
    for name in DB_NAMES:
        if p.host.exists(p.old_dir / name):
            copied = _db_copy(p, name, "--precopy")
            p.target.echo(
                f"  {name}: {copied.get('bytes_copied', 0) / 1e6:.1f} MB ahead of the hold"
            )


def copy_databases(p: Promotion, run_in: PurePosixPath | None = None) -> None:
    total = 0
    for name in DB_NAMES:
        if not p.host.exists(p.old_dir / name):
            continue
        copied = _db_copy(p, name, run_in=run_in)
        total += int(copied.get("db_bytes", 0)) + int(copied.get("wal_bytes", 0))
        p.target.echo(
            f"  {name}: consistent copy ({copied.get('mode')}), "
            f"{copied.get('bytes_under_lock', 0) / 1e6:.1f} MB under the lock, "
            f"{copied.get('seconds', 0):.2f} s"
        )
    p.copied_bytes = total


def migrate_database(p: Promotion) -> None:
    answer = p.host.run(
        [
            str(p.new_dir / layout.ENV / "bin" / "alembic"),
            "-c",
            layout.ini_name("production"),
            "upgrade",
            "head",
        ],
        cwd=p.new_dir,
    )
    said = [
        line for line in (answer.stdout + answer.stderr).splitlines() if "Running upgrade" in line
    ]
    p.target.echo(
        "  " + ("; ".join(s.split("] ")[-1] for s in said) or "already at the code's head")
    )


def start_new_release(p: Promotion) -> None:
    p.target.echo("  " + runtime(p.host, p.new_dir, "start-supervisor").stdout.strip())
    answer = runtime(p.host, p.new_dir, "wait-up", "--timeout", "60", check=False)
    if answer.returncode != 0:
        raise DeployError(f"the new release does not report healthy: {answer.stdout.strip()}")
    p.target.echo(f"  /up: {answer.stdout.strip()}")


def switch_domain(p: Promotion) -> None:
    """Detach the production domain from the old website, attach it to the new one, then let the
    held writes go, to the new release. Between the two calls the router holds the domain's
    requests instead of failing them."""
    domain = p.target.production_domain
    ip = (p.api.list_ips() or ["127.0.0.1"])[0]
    if p.old:
        old_site = p.api.website(p.webapp(p.old))
        if old_site is not None and domain in old_site.subdomains:
            rest = [d for d in old_site.subdomains if d != domain]
            p.api.update_website(old_site.name, ip, False, rest, list(old_site.website_apps))
    new_name = p.webapp(p.new)
    p.api.update_website(new_name, ip, False, [domain], [(new_name, "/")])
    if p.old:
        p.api.release_writes(p.webapp(p.old))
        if p.held_at is not None:
            p.hold_seconds = round(time.monotonic() - p.held_at, 3)
    _set_domain(p.host, p.new_dir, domain)
    if p.old:
        _set_domain(p.host, p.old_dir, None)
    p.target.echo(f"  http://{domain}/ now served by {new_name}")


def _set_domain(host: Host, directory: PurePosixPath, domain: str | None) -> None:
    info = read_release_json(host, directory)
    info["domain"] = domain
    host.write_text(directory / layout.RELEASE_JSON, json.dumps(info, indent=2) + "\n")


def stop_old_release(p: Promotion) -> None:
    left = p.api.wait_app_idle(p.webapp(p.old), 30)
    if left:
        p.target.echo(f"  {left} request(s) still under way at the old release after 30 s")
    p.target.echo("  " + runtime(p.host, p.old_dir, "stop-supervisor").stdout.strip())


def first(p: Promotion) -> bool:
    return p.old is None


def over_old(p: Promotion) -> bool:
    return p.old is not None


STEPS = (
    Step("stop_staging", "stops the staging release's app and worker", stop_staging),
    Step(
        "prepare_release",
        "deletes staging's databases and logs; production.ini replaces staging.ini",
        prepare_release,
    ),
    Step("init_production_db", "creates the production database", init_production_db, first),
    Step(
        "precopy_databases",
        "copies the bulk of production's data ahead of the hold (no lock)",
        precopy_databases,
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
    Step("migrate_database", "alembic upgrade head on the copy", migrate_database, over_old),
    Step("start_new_release", "starts the new app and worker; waits for /up", start_new_release),
    Step(
        "switch_domain",
        "the production domain moves to the new release; held writes go there",
        switch_domain,
    ),
    Step(
        "stop_old_release",
        "stops the old release once its requests are done",
        stop_old_release,
        over_old,
    ),
)


def _release_env(host: Host) -> dict[str, str]:
    from deploy.staging import read_release_env

    return read_release_env(host)


def plan(target: Target, old: str | None, new: str) -> list[str]:
    p = Promotion(target, None, None, new, old)  # type: ignore[arg-type]
    lines = [f"Promote {target.webapp(new)} to production at http://{target.production_domain}/"]
    if old:
        lines[0] += f", replacing {target.webapp(old)}"
    number = 0
    for step in STEPS:
        if step.applies(p):
            number += 1
            lines.append(f"  {number}. {step.name}: {step.changes}")
    lines.append(f"  {number + 1}. record: history, roles, unlock")
    return lines


def preflight(target: Target, host: Host, api: HostingAPI) -> tuple[str | None, str]:
    """Everything checked before anything changes; returns (old production, new)."""
    roles = records.read_roles(host)
    new = target.staging_release
    old = roles.get("production")
    if roles.get("staging") != new:
        raise TargetError(
            f"the host's staging release is {roles.get('staging')}, not {new}: "
            "set staging_release to the release to promote"
        )
    if old == new:
        raise TargetError(f"{new} is production already")
    if (target.production_release or None) != old:
        raise TargetError(
            f"the host's production release is {old or 'none'}, the fabfile expects "
            f"{target.production_release or 'none'}: set production_release = {old!r}"
        )
    new_dir = layout.release_dir(host.root, target.app_name, new)
    if not host.exists(new_dir / layout.ENV / "bin" / "python"):
        raise TargetError(f"{new} is not installed: run init_staging and deploy_staging")
    health = runtime(host, new_dir, "wait-up", "--timeout", "10", check=False)
    if health.returncode != 0:
        raise TargetError(f"staging {new} is not healthy: {health.stdout.strip()}")
    heads = host.run(
        [str(new_dir / layout.ENV / "bin" / "alembic"), "-c", layout.ini_name("staging"), "heads"],
        cwd=new_dir,
    ).stdout.split()
    if len([h for h in heads if h != "(head)"]) != 1:
        raise TargetError(f"{new}'s migrations have {len(heads)} heads; merge them first")
    if old:
        old_dir = layout.release_dir(host.root, target.app_name, old)
        size = sum(
            int(host.run(["stat", "-c", "%s", str(old_dir / n)]).stdout)
            for n in DB_NAMES
            if host.exists(old_dir / n)
        )
        free = int(host.run(["df", "-B1", "--output=avail", str(host.root)]).stdout.split()[-1])
        if free < 2 * size:
            raise TargetError(
                f"{free / 1e9:.1f} GB free on the host, {2 * size / 1e9:.1f} GB needed"
            )
        if api.website(target.webapp(old)) is None:
            raise TargetError(f"the production website {target.webapp(old)} is not on the panel")
    return old, new


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
    target.checked()
    host = target.connect()
    try:
        with hosting_session(target, host, password) as api:
            saved = host.read_text(promotion_file(host.root))
            if saved and not resume:
                state = json.loads(saved)
                raise TargetError(
                    f"a promotion of {state['new']} was interrupted after "
                    f"{state['done'][-1] if state['done'] else 'its start'}: "
                    "finish it with `fab promote_staging_to_production --resume`"
                )
            if resume:
                if not saved:
                    raise TargetError("there is no interrupted promotion to resume")
                state = json.loads(saved)
                old, new = state["old"], state["new"]
            else:
                old, new = preflight(target, host, api)
            lines = plan(target, old, new)
            for line in lines:
                target.echo(line)
            if plan_only:
                return {"planned": lines}
            if not yes and not resume and not (confirm and confirm("Promote now?")):
                raise TargetError("not confirmed; nothing changed")
            with records.host_lock(host, "promote", new, reenter=resume):
                p = Promotion(target, host, api, new, old, wrangler_password, demo)
                if resume:
                    p.done = state["done"]
                    p.durations = state.get("durations", {})
                    p.copied_bytes = state.get("copied_bytes", 0)
                return run_steps(p)
    finally:
        host.close()


def run_steps(p: Promotion) -> dict:
    journal = records.Journal(p.host, "promote", p.new)
    p.save()
    started = time.monotonic()
    for step in STEPS:
        if not step.applies(p) or step.name in p.done:
            continue
        if step.name == "switch_domain" and p.old and "hold_writes" in p.done and p.held_at is None:
            p.held_at = time.monotonic()  # resumed under a hold: count from here
        p.target.echo(f"→ {step.name}: {step.changes}")
        step_started = time.monotonic()
        try:
            with journal.step(step.name):
                step.run(p)
        except (HostError, DeployError, TargetError) as error:
            p.target.echo(f"✗ {step.name} failed after {time.monotonic() - step_started:.1f} s")
            raise DeployError(
                f"{step.name} failed: {error}\nProduction is still served by "
                f"{p.old or 'nothing yet'}. Fix the cause, then run "
                "`fab promote_staging_to_production --resume`."
            ) from None
        p.durations[step.name] = round(time.monotonic() - step_started, 2)
        p.done.append(step.name)
        p.save()
        p.target.echo(f"✓ {step.name} ({p.durations[step.name]:.1f} s)")
        if os.environ.get(CRASH_AFTER) == step.name:
            os._exit(9)  # fault injection for the tests: a kill -9 at this step boundary
    summary = {
        "production": p.new,
        "previous": p.old,
        "address": f"http://{p.target.production_domain}/",
        "write_hold_seconds": p.hold_seconds,
        "copied_bytes": p.copied_bytes,
        "steps": p.durations,
        "seconds": round(time.monotonic() - started, 2),
    }
    roles = records.read_roles(p.host)
    roles.update(production=p.new, previous=p.old, staging=None)
    records.write_roles(p.host, roles)
    records.record_event(
        p.host,
        "promote",
        release=p.new,
        previous=p.old,
        **{k: v for k, v in summary.items() if k not in ("production", "previous")},
    )
    p.host.remove(promotion_file(p.host.root))
    return summary


# Rolling back: the same machinery, pointed the other way. `new` is the previous release that
# comes back, `old` the current production that goes. Registrations made since the promotion are
# kept: the current database is copied back and migrated down with the newer release's scripts.


def copy_back(p: Promotion) -> None:
    """The current data into the previous release, copied by the newer (current) release's code."""
    copy_databases(p, run_in=p.old_dir)


def migrate_down(p: Promotion) -> None:
    """Down to the previous release's head, with the newer release's scripts (the previous
    release's own scripts do not know the newer revisions)."""
    heads = p.host.run(
        [
            str(p.new_dir / layout.ENV / "bin" / "alembic"),
            "-c",
            layout.ini_name("production"),
            "heads",
        ],
        cwd=p.new_dir,
    ).stdout.split()
    head = heads[0]
    database = p.new_dir / "RandoPony-production.sqlite"
    p.host.run(
        [
            str(p.old_dir / layout.ENV / "bin" / "alembic"),
            "-c",
            layout.ini_name("production"),
            "downgrade",
            head,
        ],
        cwd=p.old_dir,
        env={"RANDOPONY_DB_URL": f"sqlite:///{database}"},
    )
    p.target.echo(f"  {database.name} migrated down to {head}")


ROLLBACK_STEPS = (
    Step(
        "stop_current_worker",
        "the current worker finishes its task and stops; mail queues",
        stop_old_worker,
    ),
    Step("hold_writes", "the router holds writes to production (reads go on)", hold_writes),
    Step(
        "copy_back",
        "copies the current database and mail queue into the previous release",
        copy_back,
    ),
    Step(
        "migrate_down",
        "alembic downgrade to the previous release's head, on that copy",
        migrate_down,
    ),
    Step("start_previous_release", "starts the previous release; waits for /up", start_new_release),
    Step("switch_domain", "the production domain moves back; held writes go there", switch_domain),
    Step(
        "stop_current_release",
        "stops the rolled-back release once its requests are done",
        stop_old_release,
    ),
)


def rollback(
    target: Target, *, yes: bool = False, confirm=None, password: str | None = None
) -> dict:
    target.checked()
    host = target.connect()
    try:
        roles = records.read_roles(host)
        current, previous = roles.get("production"), roles.get("previous")
        if not current or not previous:
            raise TargetError("there is no previous production release to roll back to")
        if previous in roles.get("bad", []):
            raise TargetError(f"{previous} is marked bad; it is not a rollback target")
        if (target.production_release or None) != current:
            raise TargetError(
                f"the host's production release is {current}, the fabfile expects "
                f"{target.production_release or 'none'}: set production_release = {current!r}"
            )
        target.echo(
            f"Roll production back from {target.webapp(current)} to {target.webapp(previous)}:"
        )
        for number, step in enumerate(ROLLBACK_STEPS, 1):
            target.echo(f"  {number}. {step.name}: {step.changes}")
        if not yes and not (confirm and confirm("Roll back now?")):
            raise TargetError("not confirmed; nothing changed")
        with (
            hosting_session(target, host, password) as api,
            records.host_lock(host, "rollback", previous),
        ):
            p = Promotion(target, host, api, previous, current)
            journal = records.Journal(host, "rollback", previous)
            started = time.monotonic()
            for step in ROLLBACK_STEPS:
                target.echo(f"→ {step.name}: {step.changes}")
                step_started = time.monotonic()
                try:
                    with journal.step(step.name):
                        step.run(p)
                except (HostError, DeployError, TargetError) as error:
                    raise DeployError(f"rollback step {step.name} failed: {error}") from None
                p.durations[step.name] = round(time.monotonic() - step_started, 2)
                target.echo(f"✓ {step.name} ({p.durations[step.name]:.1f} s)")
            roles = records.read_roles(host)
            roles.update(
                production=previous, previous=None, bad=sorted({*roles.get("bad", []), current})
            )
            records.write_roles(host, roles)
            summary = {
                "production": previous,
                "rolled_back": current,
                "address": f"http://{target.production_domain}/",
                "write_hold_seconds": p.hold_seconds,
                "copied_bytes": p.copied_bytes,
                "steps": p.durations,
                "seconds": round(time.monotonic() - started, 2),
            }
            records.record_event(
                host,
                "rollback",
                release=previous,
                **{k: v for k, v in summary.items() if k != "production"},
            )
            return summary
    finally:
        host.close()
