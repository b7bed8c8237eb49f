"""Deploying the checkout to staging: `init_staging` the first time, `deploy_staging` after.

Both are lists of named steps run by deploy/flows/steps.py. Every step can run again safely, so
a failed deploy is repaired by running the next one, and the fabfile can run one step alone.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import PurePosixPath

from deploy.flows import release
from deploy.flows.release import DeployError, read_release_env, runtime, write_bin_scripts
from deploy.flows.steps import Run, Step, run_steps
from deploy.host import app_template, layout, release_runtime
from deploy.remote import records
from deploy.remote.hosts import Host, HostError
from deploy.remote.panel_client import HostingAPI
from deploy.remote.target import Target, TargetError, hosting_session

# Never on a server: VCS data, caches, tests, docs, development settings, local data and logs,
# build output, the local host root, secrets (installed separately at mode 0400).
RSYNC_EXCLUDES = (
    ".git",
    ".hg",
    ".venv",
    "__pycache__",
    "*.pyc",
    ".pytest_cache",
    ".ruff_cache",
    "*.egg-info",
    "/build",
    "/dist",
    "/tests",
    "/docs",
    "/bench",
    "/.ci",
    "/development.ini",
    "/testing.ini",
    "*.sqlite",
    "*.sqlite-wal",
    "*.sqlite-shm",
    "*.log",
    "*.pid",
    "/var",
    "/private_credentials",
    "/rider_lists",
)


@dataclass
class Deploy(Run):
    """A run of init_staging or deploy_staging (or of one of their steps, from the fabfile)."""

    kind: str = "deploy_staging"
    password: str | None = None  # the panel's, when not from the environment
    api: HostingAPI | None = None  # logged in before any step, for the steps that need it
    wrangler_password: str | None = None
    demo: bool = True

    @property
    def task(self) -> str:
        return self.kind

    @property
    def subject(self) -> str:
        return self.target.staging_release

    @property
    def directory(self) -> PurePosixPath:
        return release_dir(self.target, self.host)


def release_dir(target: Target, host: Host) -> PurePosixPath:
    return layout.release_dir(host.root, target.app_name, target.staging_release)


def refuse_production_release(target: Target, host: Host) -> None:
    roles = records.read_roles(host)
    if roles["production"] == target.staging_release:
        raise TargetError(
            f"release {target.staging_release} is production on {host.description}: "
            "deploy a new staging release (set staging_release) instead of changing production"
        )


# The steps. Each is a function of the run and can run again safely.


def init_staging_app(d: Deploy) -> None:
    """Through the hosting panel, as the seed guide's "Webfaction Environment" does by hand: the
    staging and production domains, the app (which assigns its port) and the website on the
    staging domain. Reuses what exists, so running it again changes nothing; an app created in
    the panel as a Pyramid app has its template replaced, as the seed guide's init_staging did."""
    target, host = d.target, d.host
    name = target.webapp(target.staging_release)
    api = d.api
    create_domains(target, api)
    app = api.app(name) or api.create_app(name, "custom_app_with_port", False, "", False)
    remove_template_app(target, host, d.directory)
    ip = (api.list_ips() or ["127.0.0.1"])[0]
    take_staging_domain(target, host, api, ip)
    site = api.website(name)
    definition = (name, ip, False, [target.staging_domain], [(name, "/")])
    if site is None:
        api.create_website(*definition)
    elif site.subdomains != (target.staging_domain,) or site.website_apps != ((name, "/"),):
        api.update_website(*definition)
    host.mkdir(d.directory)
    release.update_json(
        host,
        d.directory,
        app_name=target.app_name,
        release=target.staging_release,
        webapp=name,
        role="staging",
        port=app.port,
        domain=target.staging_domain,
    )
    roles = records.read_roles(host)
    roles["staging"] = target.staging_release
    records.write_roles(host, roles)
    target.echo(f"  app {name} on port {app.port}, website for http://{target.staging_domain}/")


def create_domains(target: Target, api: HostingAPI) -> None:
    """The staging and production domains, created in the panel when missing, so a website can
    serve them (production's now, so the promotion finds it there)."""
    names = {target.production_domain, target.staging_domain}
    # The shorter first: staging.randopony.example.org becomes a sub-domain of randopony....
    for name in sorted(names, key=lambda name: (name.count("."), name)):
        if api.ensure_domain(name) is not None:
            target.echo(f"  domain {name} created")


def remove_template_app(target: Target, host: Host, directory: PurePosixPath) -> None:
    """Stop and delete the template app the panel lays out in a new Pyramid app (its code
    directory, config file and bin/ scripts): install_app writes the release's own bin/."""
    if not host.exists(directory / app_template.CONFIG):
        return
    stop = directory / "bin" / "stop"
    if host.exists(stop):
        host.run(["sh", str(stop)])
    for path in app_template.TEMPLATE_PATHS:
        host.remove(directory / path)
    target.echo(f"  the template app in {directory} stopped and deleted")


def take_staging_domain(target: Target, host: Host, api, ip: str) -> None:
    """A new staging release replaces the one before it: the staging domain leaves that
    release's website, and that release stops (its directory stays, for cleanup_releases)."""
    name = target.webapp(target.staging_release)
    holder = next(
        (
            site
            for site in api.list_websites()
            if target.staging_domain in site.subdomains and site.name != name
        ),
        None,
    )
    if holder is None:
        return
    roles = records.read_roles(host)
    if roles["production"] and holder.name == target.webapp(roles["production"]):
        raise DeployError(
            f"{target.staging_domain} is a domain of production's website {holder.name}: "
            "choose another staging_domain"
        )
    rest = [domain for domain in holder.subdomains if domain != target.staging_domain]
    api.update_website(holder.name, ip, False, rest, list(holder.website_apps))
    said = f"  {target.staging_domain} moves from {holder.name}"
    previous = roles["staging"]
    if previous and holder.name == target.webapp(previous):
        directory = layout.release_dir(host.root, target.app_name, previous)
        if release.installed(host, directory):
            runtime(host, directory, "stop-supervisor")
        if release.read_json(host, directory):
            release.update_json(host, directory, domain=None)
        said += f"; staging release {previous} stopped"
    target.echo(said)


def rsync_code(d: Deploy) -> None:
    target, host = d.target, d.host
    destination = d.directory / layout.SRC
    if not (target.checkout / "setup.py").exists():
        raise DeployError(f"{target.checkout} is not a RandoPony checkout (no setup.py)")
    if not host.exists(d.directory / layout.RELEASE_JSON):
        raise DeployError(
            f"release {target.staging_release} is not set up on {host.description}: "
            "run init_staging"
        )
    target.echo(f"  {target.checkout} → {destination}")
    host.rsync_to(target.checkout, destination, RSYNC_EXCLUDES, echo=_progress(target))


def _progress(target: Target):
    last = [0.0]

    def show(line: str) -> None:
        line = line.strip()
        # rsync's progress2 line updates many times a second: show one a second.
        if line and (time.monotonic() - last[0] > 1 or "%" not in line):
            last[0] = time.monotonic()
            target.echo(f"  {line}")

    return show


def install_app(d: Deploy) -> None:
    target, host, directory = d.target, d.host, d.directory
    info = release.read_json(host, directory)
    if "port" not in info:
        raise DeployError(f"{directory} has no port recorded: run init_staging")
    env_python = directory / layout.ENV / "bin" / "python"
    uv = uv_command(host)
    if not host.exists(env_python):
        host.run([*uv, "venv", "--quiet", "--python", "python3", str(directory / layout.ENV)])
    src = directory / layout.SRC
    # The package is installed editable: new code needs no reinstall, new dependencies do.
    fingerprint = dependencies_fingerprint(target)
    entry_point = directory / layout.ENV / "bin" / "randopony-release"
    if info.get("dependencies") != fingerprint or not host.exists(entry_point):
        lock = str(src / "requirements.lock")
        host.run(
            [
                *uv,
                "pip",
                "install",
                "--python",
                str(env_python),
                "-r",
                lock,
                "-e",
                str(src),
            ],
            echo=_install_progress(target),
        )
        info["dependencies"] = fingerprint
    else:
        target.echo("  dependencies unchanged: nothing to install")
    # The release's own code too (only what changed is compiled again).
    host.run([str(env_python), "-m", "compileall", "-q", str(src / "app"), str(src / "deploy")])
    install_credentials(target, host, directory)
    # Files an older release machinery left readable by others (0644 databases and rider
    # lists) become the owner's alone, as everything made from now on is (umask 077).
    host.run(["chmod", "-R", "go-rwx", "--", str(directory)])
    ini = layout.ini_name("staging")
    host.symlink(f"{layout.SRC}/{ini}", directory / ini)
    host.symlink(f"{layout.SRC}/alembic", directory / "alembic")
    write_bin_scripts(host, directory)
    environment = {
        **read_release_env(host, "staging"),
        "RANDOPONY_SITE_URL": site_url(target, host, "staging"),
    }
    info["runtime"] = release_runtime.RUNTIME
    conf = release_runtime.render_conf(
        directory,
        ini,
        int(info["port"]),
        target.staging_release,
        environment,
        processes=release_runtime.app_processes(info),
    )
    # 0600: its environment= lines carry release.env's values (an SMTP password).
    host.write_text(directory / layout.SUPERVISORD_CONF, conf, mode=0o600)
    info.update(
        installed_at=records.now(), installed_by=records.who(), revision=code_revision(target)
    )
    release.write_json(host, directory, info)


def uv_command(host: Host) -> tuple[str, ...]:
    """uv on the host: on its PATH, in its python3, or else installed once into a small
    virtualenv under the host root (a Debian python3 refuses `pip install` into itself)."""
    tools = layout.deploy_dir(host.root) / "tools"
    for candidate in (("uv",), ("python3", "-m", "uv"), (str(tools / "bin" / "uv"),)):
        try:
            if host.run([*candidate, "--version"], check=False).returncode == 0:
                return candidate
        except HostError:  # not installed there
            continue
    host.run(["python3", "-m", "venv", str(tools)])
    host.run([str(tools / "bin" / "pip"), "install", "--quiet", "uv"])
    return (str(tools / "bin" / "uv"),)


def dependencies_fingerprint(target: Target) -> str:
    digest = hashlib.sha256()
    for name in ("setup.py", "requirements.lock"):
        digest.update((target.checkout / name).read_bytes())
    return digest.hexdigest()[:16]


def _install_progress(target: Target):
    show = _progress(target)

    def filtered(line: str) -> None:
        # uv lists every package it adds or removes; the counts it prints say enough.
        if not line.lstrip().startswith(("+ ", "- ", "~ ")):
            show(line)

    return filtered


def install_credentials(target: Target, host: Host, directory: PurePosixPath) -> None:
    """The release's own private_credentials (a session secret of its own), made on its first
    install and kept after; always mode 0400, and never printed. A checkout's private_credentials
    (a developer's, made by initialize_RandoPony_db) is never copied: every release holding the
    same secret let a staging cookie log in on production. Mail credentials come from the
    host's release.env files."""
    from app.settings import credentials_text, new_credentials

    path = directory / layout.CREDENTIALS
    if not host.exists(path):
        host.write_text(path, credentials_text(new_credentials()), mode=0o400)
    host.chmod(path, 0o400)


def code_revision(target: Target) -> str:
    try:
        revision = subprocess.run(
            ["git", "-C", str(target.checkout), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return revision


def init_staging_db(d: Deploy) -> None:
    release.initialize_db(
        d.host, d.directory, "staging", d.target.wrangler_email, d.wrangler_password, d.demo
    )
    _record_migrations(d.target, d.host, d.directory)


def migrations_fingerprint(target: Target) -> str:
    digest = hashlib.sha256()
    for path in sorted((target.checkout / "alembic" / "versions").glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def _record_migrations(target: Target, host: Host, directory: PurePosixPath) -> None:
    release.update_json(host, directory, migrations=migrations_fingerprint(target))


def migrations_changed(d: Deploy) -> bool:
    """The same migrations as last time need no alembic run."""
    recorded = release.read_json(d.host, d.directory).get("migrations")
    return recorded != migrations_fingerprint(d.target)


def migrate_staging_db(d: Deploy) -> None:
    """New migrations in the deployed code: staging's database follows them."""
    answer = release.alembic(d.host, d.directory, "staging", "upgrade", "head")
    d.target.echo("  " + ("; ".join(release.upgrades_ran(answer)) or "already at head"))
    _record_migrations(d.target, d.host, d.directory)


def restart_staging(d: Deploy) -> None:
    """Put the new code in service under the release's supervisord (restarted in full when its
    configuration changed), and wait until the app reports healthy."""
    answer = runtime(d.host, d.directory, "reload", "--wait-up", "60", check=False)
    said, _, health = answer.stdout.strip().rpartition("\n")
    d.target.echo("  " + said)
    if answer.returncode != 0:
        raise DeployError(f"the app does not report healthy: {health or answer.stderr.strip()}")


def record_deploy(d: Deploy) -> None:
    records.record_event(
        d.host, d.kind, release=d.target.staging_release, revision=code_revision(d.target)
    )


APP = Step(
    "init_staging_app",
    "the domains, the app (and its port) and the staging website",
    init_staging_app,
)
RSYNC = Step("rsync_code", "the checkout into the release's src/ (rsync)", rsync_code)
INSTALL = Step(
    "install_app",
    "virtualenv, package, credentials, ini link, bin/ scripts, supervisord.conf",
    install_app,
)
INIT_DB = Step(
    "init_staging_db",
    "migrate the staging database, add its settings and a wrangler",
    init_staging_db,
)
MIGRATE = Step(
    "migrate_staging_db",
    "alembic upgrade head on staging's database",
    migrate_staging_db,
    migrations_changed,
)
RESTART = Step("restart_staging", "the app and its celery worker, then /up", restart_staging)
RECORD = Step("record_deploy", "the host's history", record_deploy)

INIT_STEPS = (APP, RSYNC, INSTALL, INIT_DB, RESTART, RECORD)
DEPLOY_STEPS = (RSYNC, INSTALL, MIGRATE, RESTART, RECORD)


def init_staging(
    target: Target, password: str | None, wrangler_password: str, demo: bool = True
) -> str:
    return _deploy(
        target,
        Deploy(
            target,
            None,
            kind="init_staging",
            password=password,
            wrangler_password=wrangler_password,
            demo=demo,
        ),
        INIT_STEPS,
    )


def deploy_staging(target: Target) -> str:
    return _deploy(target, Deploy(target, None, kind="deploy_staging"), DEPLOY_STEPS)


def run_one(
    target: Target,
    name: str,
    password: str | None = None,
    wrangler_password: str | None = None,
) -> str:
    """One of init_staging's steps alone (the fabfile's rsync_code, install_app...), locked and
    journaled like the whole."""
    (step,) = [step for step in INIT_STEPS if step.name == name]
    run = Deploy(target, None, kind=name, password=password, wrangler_password=wrangler_password)
    return _deploy(target, run, (step,))


def _deploy(target: Target, run: Deploy, steps: tuple[Step, ...]) -> str:
    with target.connected() as host, ExitStack() as panel:
        run.host = host
        refuse_production_release(target, host)
        if APP in steps:
            # A panel that does not answer or refuses the login refuses the run before
            # anything is written, the journal included.
            run.api = panel.enter_context(hosting_session(target, host, run.password))
        with records.host_lock(host, run.kind, target.staging_release):
            run_steps(run, steps)  # a failure says which step: StepFailed, a DeployError
        return staging_address(target, host)


def staging_address(target: Target, host: Host | None = None) -> str:
    return f"http://{target.staging_domain}:{router_port(target, host)}/"


def site_url(target: Target, host: Host | None, role: str) -> str:
    """Where browsers reach the release playing `role`: the base of every link in its mail
    (RANDOPONY_SITE_URL), so no request's Host header can choose where a link points."""
    domain = target.production_domain if role == "production" else target.staging_domain
    port = target.public_port or router_port(target, host)
    default = {"http": 80, "https": 443}[target.public_scheme]
    return f"{target.public_scheme}://{domain}" + ("" if port == default else f":{port}")


def router_port(target: Target, host: Host | None = None) -> int:
    """The port the host's router listens on, as host_up saved it on the host; 8080 (the
    local host's default) when it is not known. A real server's front end may differ."""
    path = PurePosixPath(target.host_root) / "supervisor" / "host.json"
    try:
        text = host.read_text(path) if host is not None else open(path).read()
        return json.loads(text or "")["router"][1]
    except (OSError, ValueError, KeyError, HostError):
        return 8080
