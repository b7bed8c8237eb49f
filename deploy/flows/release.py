"""What every flow does to a release directory on a host: its release.json, its runtime (the
release's own randopony-release program), its alembic, its bin scripts and environment, and
the room a copy of its data needs. Staging, promotion, sync, cleanup and app control all go
through these, so a release is read and driven one way."""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import PurePosixPath

from deploy.host import layout
from deploy.remote.hosts import Host
from deploy.remote.target import TargetError


class DeployError(Exception):
    """A step on the host failed; the message says what to do next."""


def read_json(host: Host, directory: PurePosixPath) -> dict:
    text = host.read_text(directory / layout.RELEASE_JSON)
    return json.loads(text) if text else {}


def write_json(host: Host, directory: PurePosixPath, info: dict) -> None:
    host.write_text(directory / layout.RELEASE_JSON, json.dumps(info, indent=2) + "\n")


def update_json(host: Host, directory: PurePosixPath, **values) -> dict:
    info = read_json(host, directory)
    info.update(values)
    write_json(host, directory, info)
    return info


def installed(host: Host, directory: PurePosixPath) -> bool:
    return host.exists(directory / layout.ENV / "bin" / "python")


def standby_capable(host: Host, directory: PurePosixPath, role: str = "production") -> bool:
    """Whether the release's app can start in standby (app/standby.py): releases made before
    it existed start only once their data is in place."""
    ini = host.read_text(directory / layout.ini_name(role)) or ""
    return any(line.startswith("standby_file") for line in ini.splitlines())


def runtime(
    host: Host, directory: PurePosixPath, *command: str, check: bool = True
) -> subprocess.CompletedProcess:
    """A command of the release's runtime (deploy/host/release_runtime.py), run by the release's
    own code on the host: start-supervisor, stop-app, wait-up, tail..."""
    if not installed(host, directory):
        python = directory / layout.ENV / "bin" / "python"
        raise DeployError(f"{directory} is not installed (no {python}): run install_app")
    return host.run(
        layout.release_program(directory, "randopony-release", str(directory), *command),
        check=check,
        cwd=directory,  # a legacy `-m` imports from the working directory first: its own code
    )


def alembic(
    host: Host,
    directory: PurePosixPath,
    role: str,
    *command: str,
    database: PurePosixPath | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess:
    """The release's alembic with its role's ini, on its own database or on `database`."""
    env = {"RANDOPONY_DB_URL": f"sqlite:///{database}"} if database else None
    return host.run(
        [str(directory / layout.ENV / "bin" / "alembic"), "-c", layout.ini_name(role), *command],
        cwd=directory,
        env=env,
        check=check,
    )


def alembic_heads(host: Host, directory: PurePosixPath, role: str) -> list[str]:
    answer = alembic(host, directory, role, "heads")
    return [word for word in answer.stdout.split() if word != "(head)"]


def upgrades_ran(answer: subprocess.CompletedProcess) -> list[str]:
    """The migrations an `alembic upgrade` ran, as it logs them ("0004 -> 0005, ...")."""
    said = (answer.stdout or "") + (answer.stderr or "")
    return [line.split("] ")[-1] for line in said.splitlines() if "Running upgrade" in line]


def initialize_db(
    host: Host,
    directory: PurePosixPath,
    role: str,
    wrangler_email: str,
    wrangler_password: str | None,
    demo: bool,
) -> None:
    """The release's initialize_RandoPony_db on its role's database: migrated, its required
    rows, a first wrangler, and with `demo` a few events with riders. Safe to run again."""
    argv = [
        str(directory / layout.ENV / "bin" / "initialize_RandoPony_db"),
        layout.ini_name(role),
        "--wrangler-email",
        wrangler_email,
        *(["--demo"] if demo else []),
    ]
    # The password goes by the environment, never argv; without it the script keeps any
    # wrangler there is.
    env = {"RANDOPONY_WRANGLER_PASSWORD": wrangler_password} if wrangler_password else None
    host.run(argv, cwd=directory, env=env)


def write_bin_scripts(host: Host, directory: PurePosixPath) -> None:
    """bin/start, bin/stop, bin/restart for a person on the host, doing what the fab tasks do."""
    program = shlex.quote(str(directory / layout.ENV / "bin" / "randopony-release"))
    where = shlex.quote(str(directory))
    scripts = {
        "start": f"exec {program} {where} start-app\n",
        "stop": f"exec {program} {where} stop-app\n",
        "restart": f"{program} {where} stop-app\nexec {program} {where} start-app\n",
    }
    for name, body in scripts.items():
        host.write_text(directory / layout.BIN / name, "#!/bin/sh\nset -e\n" + body, mode=0o755)


def read_release_env(host: Host, role: str) -> dict[str, str]:
    """release.env's values, then the role's own (production.env or staging.env). Both files
    are made readable by their owner only, as they may hold passwords."""
    values = {}
    for path in (layout.release_env_file(host.root), layout.role_env_file(host.root, role)):
        text = host.read_text(path)
        if text is None:
            continue
        host.chmod(path, 0o600)
        pairs = (
            line.split("=", 1)
            for line in text.splitlines()
            if "=" in line and not line.startswith("#")
        )
        values.update({key.strip(): value.strip() for key, value in pairs})
    return values


def size_of(host: Host, paths: list[PurePosixPath]) -> int:
    """The bytes of those of `paths` that exist."""
    present = [str(path) for path in paths if host.exists(path)]
    if not present:
        return 0
    answer = host.run(["stat", "-c", "%s", "--", *present])
    return sum(int(word) for word in answer.stdout.split())


def check_free_space(host: Host, needed: int, why: str) -> None:
    """Refused before anything changes when the host's disk cannot take the copies."""
    answer = host.run(["df", "-B1", "--output=avail", str(host.root)])
    free = int(answer.stdout.split()[-1])
    if free < needed:
        raise TargetError(
            f"{free / 1e9:.1f} GB free on the host, {needed / 1e9:.1f} GB needed ({why})"
        )
