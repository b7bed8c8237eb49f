"""RandoPony maintainer tasks (`fab -l`). Each task is a thin layer over deploy/.

The seed guide's commands work as written, with underscores: `fab init_staging`,
`fab deploy_staging` (or just `fab`), `fab start_app --release=staging`, `fab releases`...

The module values below are the defaults and expectations for this checkout; the host keeps the
truth about which release is staging and which is production, and tasks check them against it.
Scripts and tests may override them with environment variables (RANDOPONY_HOST_ROOT, ...).
Passwords come from a prompt, or from RANDOPONY_HOSTING_PASSWORD / RANDOPONY_WRANGLER_PASSWORD.
"""

import os
from pathlib import Path

from fabric import task
from invoke import Exit

from deploy.flows import app_control, promote, schedule, staging, sync
from deploy.flows import upgrade_attempt as attempts
from deploy.flows.release import DeployError
from deploy.host import service
from deploy.remote import records
from deploy.remote.hosts import HostError
from deploy.remote.panel_client import HostingError
from deploy.remote.target import CHECKOUT, Target, TargetError

# The seed's module values. user/hosts: set ssh_host to deploy to a real server over SSH.
app_name = "randopony"
staging_release = "2026r2"
production_release = "2026r1"  # None before the first promotion
staging_domain = "staging.randopony.localhost"
production_domain = "randopony.localhost"
hosting_api = "http://127.0.0.1:8090/"  # the panel, as seen on the host (tunnelled over SSH)
hosting_user = "randopony"
host_root = str(CHECKOUT / "var" / "host")  # over SSH: the account's home, e.g. /home/randopony
ssh_host = None  # e.g. "randopony@pony.example.org:22"
ssh_key = None
ssh_known_hosts = None
wrangler_email = "wrangler@example.com"
checkout = str(CHECKOUT)  # what rsync_code copies
# How browsers reach the sites: the links in the sites' mail are built from these, never from a
# request. public_port None: the host's router port (80 and 443 are left out of links).
public_scheme = "http"
public_port = None

ENVIRONMENT = {
    "app_name": "RANDOPONY_APP_NAME",
    "staging_release": "RANDOPONY_STAGING_RELEASE",
    "production_release": "RANDOPONY_PRODUCTION_RELEASE",
    "staging_domain": "RANDOPONY_STAGING_DOMAIN",
    "production_domain": "RANDOPONY_PRODUCTION_DOMAIN",
    "hosting_api": "RANDOPONY_HOSTING_API",
    "hosting_user": "RANDOPONY_HOSTING_USER",
    "host_root": "RANDOPONY_HOST_ROOT",
    "ssh_host": "RANDOPONY_SSH_HOST",
    "ssh_key": "RANDOPONY_SSH_KEY",
    "ssh_known_hosts": "RANDOPONY_SSH_KNOWN_HOSTS",
    "wrangler_email": "RANDOPONY_WRANGLER_EMAIL",
    "checkout": "RANDOPONY_CHECKOUT",
    "public_scheme": "RANDOPONY_PUBLIC_SCHEME",
    "public_port": "RANDOPONY_PUBLIC_PORT",
}
FAILURES = (TargetError, HostError, HostingError, DeployError, records.LockHeld)


def target() -> Target:
    values = {name: os.environ.get(var, globals()[name]) for name, var in ENVIRONMENT.items()}
    values["checkout"] = Path(values["checkout"])
    return Target(**values)


def run(action, *args):
    """Run a deploy/ function; a refusal or failure ends the task with its message, exit 1."""
    try:
        return action(*args)
    except FAILURES as error:
        raise Exit(f"error: {error}", code=1) from None
    except KeyboardInterrupt:
        raise Exit(
            "interrupted. A promotion or rollback stopped here is finished with the same "
            "command and --resume (or a promotion undone with `fab rollback_production`); "
            "the host's deploy/journal.log says which step was under way.",
            code=130,
        ) from None


def wrangler_password() -> str:
    password = os.environ.get("RANDOPONY_WRANGLER_PASSWORD")
    if password:
        return password
    import getpass

    try:
        return getpass.getpass("Password for the staging wrangler: ")
    except (EOFError, KeyboardInterrupt):
        raise Exit("error: no wrangler password: set RANDOPONY_WRANGLER_PASSWORD", code=1) from None


# Staging deployment


@task
def init_staging(c):
    """First deployment of staging_release: app and website, code, virtualenv, database."""
    address = run(staging.init_staging, target(), None, wrangler_password())
    print(f"Staging is up: {address}")


@task
def init_staging_app(c):
    """Create the staging app (which assigns its port) and its website through the panel."""
    run(staging.run_one, target(), "init_staging_app")


@task
def rsync_code(c):
    """Copy the checkout into the staging release's src/ (rsync --delete --links)."""
    run(staging.run_one, target(), "rsync_code")


@task
def install_app(c):
    """Virtualenv, package, credentials (0400), ini link, bin/ scripts, supervisord.conf."""
    run(staging.run_one, target(), "install_app")


@task
def init_staging_db(c):
    """Initialise the staging database with staging-safe addresses and links and a wrangler."""
    run(staging.run_one, target(), "init_staging_db", None, wrangler_password())


@task(default=True)
def deploy_staging(c):
    """(default) rsync_code, install_app, then restart the staging app and worker."""
    address = run(staging.deploy_staging, target())
    print(f"Staging is up: {address}")


# Production


def confirm(question: str) -> bool:
    try:
        return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")
    except EOFError:
        return False


@task(
    help={
        "yes": "do not ask",
        "plan": "only print the plan",
        "resume": "finish an interrupted promotion",
        "demo": "first promotion only: production's new database gets demo events with riders "
        "(as `make run` does); later promotions carry production's data forward and ignore it",
    }
)
def promote_staging_to_production(c, yes=False, plan=False, resume=False, demo=False):
    """Promote staging to production: writes held, not refused; database carried forward."""
    t = target()
    first = t.production_release is None
    summary = run(
        lambda: promote.promote(
            t,
            yes=yes,
            plan_only=plan,
            resume=resume,
            confirm=confirm,
            wrangler_password=wrangler_password() if first and not plan else None,
            demo=demo,
        )
    )
    if plan:
        return
    print(
        f"Production is {summary['production']} at {summary['address']} "
        f"(previous: {summary['previous'] or 'none'}); writes held "
        f"{summary['write_hold_seconds'] or 0:.2f} s; "
        f"{summary['copied_bytes'] / 1e6:.1f} MB copied; "
        f"{summary['seconds']:.1f} s in all. Set production_release = {summary['production']!r}."
    )


@task(help={"yes": "do not ask", "resume": "finish an interrupted rollback"})
def rollback_production(c, yes=False, resume=False):
    """Put the previous release back in production, keeping every registration since; or undo
    an interrupted promotion."""
    summary = run(lambda: promote.rollback(target(), yes=yes, resume=resume, confirm=confirm))
    if summary["undone"]:
        print(
            f"The promotion of {summary['rolled_back']} is undone: production is "
            f"{summary['production'] or 'empty'} as before, and {summary['rolled_back']} is "
            f"staging again. {summary['seconds']:.1f} s in all."
        )
        return
    print(
        f"Production is {summary['production']} again at {summary['address']}; "
        f"{summary['rolled_back']} is marked bad. Writes held "
        f"{summary['write_hold_seconds'] or 0:.2f} s; {summary['seconds']:.1f} s in all. "
        f"Set production_release = {summary['production']!r}."
    )


@task(
    help={
        "keep": "how many of the newest other releases to keep (production and the rollback "
        "target are always kept)",
        "yes": "do not ask",
    }
)
def cleanup_releases(c, keep="2", yes=False):
    """Remove old release directories with their apps and websites on the hosting panel."""
    from deploy.flows import cleanup

    run(lambda: cleanup.cleanup_releases(target(), keep=keep, yes=yes, confirm=confirm))


@task(help={"yes": "do not ask"})
def unlock(c, yes=False):
    """Clear a stale lock left by a release operation that died."""
    t = target().checked()

    def call():
        with t.connected() as host:
            holder = records.lock_holder(host)
            if holder is None:
                print("The host is not locked.")
                return
            print(
                f"Locked by {holder.get('by')} for {holder.get('purpose')} of "
                f"{holder.get('release')} since {holder.get('since')}."
            )
            if records.holder_alive(holder):
                raise TargetError(
                    f"process {holder.get('pid')} that holds the lock is still running: the lock "
                    "stays; wait for it to finish"
                )
            if not yes and not confirm("Clear the lock?"):
                raise TargetError("not confirmed; the lock stays")
            records.clear_lock(host)
            print("Lock cleared.")

    run(call)


# Staging refreshed from production, and upgrade attempts


@task
def sync_staging(c):
    """Refresh staging from a consistent snapshot of production, sanitised so staging can never
    mail a real rider (production keeps serving; its writes are not held)."""
    password = os.environ.get("RANDOPONY_WRANGLER_PASSWORD") or None
    sync.print_summary(run(sync.sync_staging, target(), password))


@task(help={"at": "HH:MM on the host's clock", "remove": "take the nightly sync out"})
def schedule_sync_staging(c, at="03:00", remove=False):
    """Run sync_staging every night from the host's crontab; logs to the host's logs/user/."""
    print(run(schedule.schedule_sync, target(), at, remove))


@task(
    help={
        "minutes": "the window users test the new release in",
        "accept": "end the attempt keeping the new release",
        "cancel": "end it rolling back, keeping every registration made in the window",
        "yes": "do not ask",
    }
)
def upgrade_attempt(c, minutes=None, accept=False, cancel=False, yes=False):
    """Sync staging, promote it for a time-boxed attempt; then --accept or --cancel."""
    if sum(map(bool, (minutes, accept, cancel))) != 1:
        raise Exit("error: give one of --minutes=N, --accept or --cancel", code=1)
    t = target()
    if accept:
        done = run(attempts.accept, t)
        print(
            f"Upgrade attempt accepted: {done['release']} stays production "
            f"(rollback target: {done.get('previous')})."
        )
        return
    if cancel:
        done = run(lambda: attempts.cancel(t, yes=yes, confirm=confirm))
        print(
            f"Upgrade attempt cancelled: production is {done['production']} again, with every "
            f"registration made in the window. Set production_release = {done['production']!r}."
        )
        return
    password = os.environ.get("RANDOPONY_WRANGLER_PASSWORD") or None
    done = run(
        lambda: attempts.start(t, minutes, yes=yes, confirm=confirm, wrangler_password=password)
    )
    sync.print_summary(done["sync"])
    print(
        f"Upgrade attempt: {done['release']} is production at {done['promotion']['address']} "
        f"until {done['ends']} ({done['minutes']} min). Then `fab upgrade_attempt --accept` or "
        f"`--cancel`. Set production_release = {done['release']!r}."
    )


# Apps and supervisors, by role


def _role(release):
    if release not in ("staging", "production"):
        raise Exit(f"error: --release must be staging or production, not {release!r}", code=1)
    return release


@task
def start_app(c, release="staging"):
    """Start a release's app (--release=staging|production)."""
    print(run(app_control.start_app, target(), _role(release)))


@task
def stop_app(c, release="staging"):
    """Stop a release's app and wait until its process is gone."""
    print(run(app_control.stop_app, target(), _role(release)))


@task
def restart_app(c, release="staging"):
    """Stop, then start a release's app."""
    print(run(app_control.restart_app, target(), _role(release)))


@task
def tail_app_log(c, release="staging", lines=50):
    """The end of a release's app log (pyramid.log)."""
    print(run(app_control.tail, target(), _role(release), "app", int(lines)))


@task
def start_staging_supervisor(c):
    """Start staging's supervisord, and with it the app and its celery worker."""
    print(run(app_control.start_supervisor, target(), "staging"))


@task
def stop_staging_supervisor(c):
    """Stop staging's supervisord, its app and worker; waits until they are gone."""
    print(run(app_control.stop_supervisor, target(), "staging"))


@task
def restart_staging_supervisor(c):
    """Stop, then start staging's supervisord."""
    print(run(app_control.restart_supervisor, target(), "staging"))


@task
def tail_staging_supervisor_log(c, lines=50):
    """The end of staging's supervisord.log."""
    print(run(app_control.tail, target(), "staging", "supervisord", int(lines)))


@task
def tail_staging_celery_log(c, lines=50):
    """The end of staging's celery.log."""
    print(run(app_control.tail, target(), "staging", "celery", int(lines)))


@task
def start_production_supervisor(c):
    """Start production's supervisord, and with it the app and its celery worker."""
    print(run(app_control.start_supervisor, target(), "production"))


@task
def stop_production_supervisor(c):
    """Stop production's supervisord, its app and worker; waits until they are gone."""
    print(run(app_control.stop_supervisor, target(), "production"))


@task
def restart_production_supervisor(c):
    """Stop, then start production's supervisord."""
    print(run(app_control.restart_supervisor, target(), "production"))


@task
def tail_production_supervisor_log(c, lines=50):
    """The end of production's supervisord.log."""
    print(run(app_control.tail, target(), "production", "supervisord", int(lines)))


@task
def tail_production_celery_log(c, lines=50):
    """The end of production's celery.log."""
    print(run(app_control.tail, target(), "production", "celery", int(lines)))


@task
def releases(c):
    """The host's releases: role, port, domain, state, when and by whom deployed; an open
    upgrade attempt and the nightly sync."""
    app_control.print_releases(run(app_control.release_rows, target()))
    for line in run(attempts.host_status, target()):
        print(line)


@task
def ps(c):
    """What runs for each release on the host (same as releases)."""
    app_control.print_releases(run(app_control.release_rows, target()))


# The local host (hosting panel and router)


@task
def host_up(c, root=None, panel_port=8090, router_port=8080, trusted_front_end=""):
    """Start the local host (hosting panel and router) under its supervisord.
    --trusted-front-end=ADDRESS[,ADDRESS]: a TLS front end whose X-Forwarded-Proto is believed."""
    front_ends = tuple(a for a in trusted_front_end.split(",") if a)
    try:
        status = service.host_up(
            root, int(panel_port), int(router_port), trusted_front_ends=front_ends
        )
    except service.HostServiceError as error:
        raise Exit(str(error), code=1) from None
    service.print_status(status)


@task
def host_down(c, root=None):
    """Stop the local host and its supervisord."""
    service.print_status(service.host_down(root))


@task
def host_status(c, root=None):
    """Show whether the local host's panel and router run and answer."""
    status = service.host_status(root)
    service.print_status(status)
    if not status.running:
        raise Exit(code=3)
