"""Where things live on a host, as pure functions of the host root, so the code that builds a
release and the code that runs on the host agree. README.md's "Architecture" draws it."""

from __future__ import annotations

import re
from pathlib import PurePosixPath

RELEASE_NAME = re.compile(r"^[0-9]{4}r[0-9]{1,3}$")
DOTTED_RELEASE = re.compile(r"^[0-9]{1,4}(\.[0-9]{1,4}){1,3}$")
APP_NAME = re.compile(r"^[a-z][a-z0-9_]{0,29}$")
ROLES = ("staging", "production")


class InvalidName(ValueError):
    pass


def release_name(value) -> str:
    """'2026r1' as it is; a dotted version '2026.1' becomes '2026_1' (a Webfaction app name
    allows no dots). Anything else is refused before it can reach a path or a shell."""
    text = str(value or "").strip()
    if RELEASE_NAME.fullmatch(text):
        return text
    if DOTTED_RELEASE.fullmatch(text):
        return text.replace(".", "_")
    raise InvalidName(
        f"invalid release name {value!r}: use a year and a release number like 2026r1 "
        "(or a dotted version like 2026.1)"
    )


def app_name(value) -> str:
    text = str(value or "")
    if not APP_NAME.fullmatch(text):
        raise InvalidName(
            f"invalid app name {value!r}: lower-case letters, digits and underscores, "
            "starting with a letter, at most 30 characters"
        )
    return text


def role(value) -> str:
    if value not in ROLES:
        raise InvalidName(f"invalid release role {value!r}: staging or production")
    return value


def webapp_name(app: str, release: str) -> str:
    """The hosting panel's app (and website) name for a release: randopony2026r1."""
    return app_name(app) + release_name(release)


def release_dir(root: PurePosixPath, app: str, release: str) -> PurePosixPath:
    return root / "webapps" / webapp_name(app, release)


def deploy_dir(root: PurePosixPath) -> PurePosixPath:
    return root / "deploy"


def releases_log(root: PurePosixPath) -> PurePosixPath:
    return deploy_dir(root) / "releases.log"


def journal(root: PurePosixPath) -> PurePosixPath:
    return deploy_dir(root) / "journal.log"


def roles_file(root: PurePosixPath) -> PurePosixPath:
    return deploy_dir(root) / "roles.json"


def release_env_file(root: PurePosixPath) -> PurePosixPath:
    """KEY=VALUE lines every release's processes get in their environment (e.g. the host's SMTP
    relay); optional."""
    return deploy_dir(root) / "release.env"


def role_env_file(root: PurePosixPath, role: str) -> PurePosixPath:
    """KEY=VALUE lines for one role's release only, after release.env's: where secrets go (the
    production SMTP password), so staging and production share none; optional."""
    return deploy_dir(root) / f"{role}.env"


# Inside a release directory.
ENV = "env"
SRC = "src"
BIN = "bin"
CREDENTIALS = "private_credentials"
SUPERVISORD_CONF = "supervisord.conf"
SUPERVISOR_SOCKET = "supervisor.sock"
RELEASE_JSON = "release.json"
# While this file exists the release's app opens no database (app/standby.py, standby_file).
STANDBY = "standby"
LOGS = {"app": "pyramid.log", "celery": "celery.log", "supervisord": "supervisord.log"}


def ini_name(release_role: str) -> str:
    return f"{role(release_role)}.ini"


def database_files(release_role: str) -> tuple[str, ...]:
    name = "staging" if release_role == "staging" else "production"
    base = f"RandoPony-{name}.sqlite"
    return (
        base,
        base + "-wal",
        base + "-shm",
        "celery.sqlite",
        "celery.sqlite-wal",
        "celery.sqlite-shm",
    )


# Programs the machinery runs inside a release, by the console scripts of the release's own
# setup.py. Releases installed before deploy/ was split into host/, remote/ and flows/ have no
# such scripts, only these module paths; callers fall back to them, so moving a file never
# strands a release already on a host.
LEGACY_MODULES = {
    "randopony-release": "deploy.release_runtime",
    "randopony-db-copy": "deploy.db_copy",
    "randopony-schedule": "deploy.schedule",
}
_SCRIPT_OR_MODULE = 'p=$1; shift; if [ -x "$p" ]; then shift 3; exec "$p" "$@"; fi; exec "$@"'


def release_program(directory: PurePosixPath, program: str, *args: str) -> list[str]:
    """The command line that runs `program` from the release in `directory`: its console
    script when it has one, else its module path (one command either way: no extra round trip
    to an SSH host)."""
    env_bin = directory / ENV / "bin"
    module = [str(env_bin / "python"), "-m", LEGACY_MODULES[program]]
    return ["sh", "-c", _SCRIPT_OR_MODULE, "sh", str(env_bin / program), *module, *args]
