"""Start, stop and report the local host (panel and router) under a supervisord of its own.

supervisord restarts the host process if it crashes; we talk to it through its XML-RPC
interface on a unix socket under ``<host root>/supervisor/``.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import shlex
import socket
import sys
import time
import xmlrpc.client
from dataclasses import asdict, dataclass
from pathlib import Path

from deploy.host import paths, supervisor
from deploy.host.paths import DEFAULT_PANEL, DEFAULT_ROUTER

PROGRAM = "host"
# Runs once each time the host's supervisord starts: brings back the releases that should run.
BOOT = "releases"


class HostServiceError(Exception):
    """The host could not be started or stopped; the message says why and what to do."""


@dataclass(frozen=True)
class HostConfig:
    root: Path
    panel: tuple[str, int] = DEFAULT_PANEL
    router: tuple[str, int] = DEFAULT_ROUTER
    wait_limit: float = 30.0
    # For a developer's machine: an SMTP sink that keeps every mail the releases send.
    mail_port: int | None = None
    # The ports the panel gives apps ("FIRST-LAST"); None: the panel's default. Two hosts on
    # one machine (a developer's and a test's) need ranges of their own.
    app_ports: str | None = None
    # Addresses of a TLS front end whose X-Forwarded-Proto the router passes on (none: the
    # router's own scheme, whatever a client says).
    trusted_front_ends: tuple[str, ...] = ()

    @property
    def panel_url(self) -> str:
        return f"http://{self.panel[0]}:{self.panel[1]}/"

    @property
    def router_url(self) -> str:
        return f"http://{self.router[0]}:{self.router[1]}/"


@dataclass(frozen=True)
class HostStatus:
    root: Path
    supervisord: bool
    state: str
    pid: int | None
    description: str
    panel_url: str
    router_url: str
    panel_answers: bool
    router_answers: bool

    @property
    def running(self) -> bool:
        return self.state == "RUNNING" and self.panel_answers and self.router_answers


def host_up(
    root: Path | None = None,
    panel_port: int = DEFAULT_PANEL[1],
    router_port: int = DEFAULT_ROUTER[1],
    wait_limit: float = 30.0,
    timeout: float = 30.0,
    mail_port: int | None = None,
    app_ports: str | None = None,
    trusted_front_ends: tuple[str, ...] = (),
) -> HostStatus:
    """Start supervisord and the host under it (or keep them running); wait until both answer."""
    root = _root(root)
    for address in trusted_front_ends:
        try:
            ipaddress.ip_address(address)
        except ValueError:
            raise HostServiceError(
                f"trusted front end {address!r} is not an IP address; nothing was changed"
            ) from None
    config = HostConfig(
        root,
        ("127.0.0.1", panel_port),
        ("127.0.0.1", router_port),
        wait_limit=wait_limit,
        mail_port=mail_port,
        app_ports=app_ports,
        trusted_front_ends=tuple(trusted_front_ends),
    )
    folder = paths.supervisor_dir(root)
    socket_path = folder / "supervisor.sock"
    if len(str(socket_path)) > supervisor.MAX_SOCKET_PATH:
        raise HostServiceError(
            f"the host root {root} is too deep for supervisord's socket ({socket_path}); "
            "use a shorter path"
        )
    conf = _supervisord_conf(config, socket_path)
    conf_path = folder / "supervisord.conf"
    running = _supervisor(root) if _supervisord_answers(root) else None
    if running and conf_path.read_text() != conf:
        # Started with other settings: restart cleanly with the new ones.
        host_down(root, timeout)
        running = None
    started = running is None
    if running is None:
        for address in (config.panel, config.router):
            if _port_answers(address):
                raise HostServiceError(
                    f"{address[0]}:{address[1]} is already in use by another program; "
                    "stop it or choose another port"
                )
        folder.mkdir(parents=True, exist_ok=True)
        paths.host_logs(root).mkdir(parents=True, exist_ok=True)
        conf_path.write_text(conf)
        conf_path.chmod(0o600)
        (folder / "host.json").write_text(json.dumps(_config_json(config)))
        try:
            supervisor.start(conf_path, socket_path, timeout)
        except supervisor.SupervisorError as error:
            raise HostServiceError(str(error)) from None
    else:
        try:
            supervisor.start_program(socket_path, PROGRAM)
        except supervisor.SupervisorError as error:
            raise HostServiceError(f"the host did not start: {error}") from None
    _wait(lambda: host_status(root).running, timeout, "the panel and the router to answer", root)
    if started:
        # The releases come back before anyone acts on them (a deploy racing the boot for a
        # release's supervisord would find it half started).
        _wait(lambda: _boot_state(root) not in BOOTING, 300, "the releases to come back", root)
    return host_status(root)


BOOTING = ("STARTING", "RUNNING", "BACKOFF", None)


def _boot_state(root: Path) -> str | None:
    try:
        return _supervisor(root).getProcessInfo(BOOT)["statename"]
    except (OSError, xmlrpc.client.Error):
        return None


def boot_log(root: Path) -> Path:
    return paths.host_logs(root) / "releases.log"


def host_down(root: Path | None = None, timeout: float = 30.0) -> HostStatus:
    """Stop the host and its supervisord; nothing to do if they are not running."""
    root = _root(root)
    if _supervisord_answers(root):
        pid = _supervisor(root).getPID()
        _supervisor(root).shutdown()
        _wait(lambda: not supervisor.pid_alive(pid), timeout, "supervisord to stop", root)
    return host_status(root)


def host_status(root: Path | None = None) -> HostStatus:
    root = _root(root)
    config = read_config(root)
    state, pid, description = "NOT STARTED", None, "supervisord is not running"
    supervisord = _supervisord_answers(root)
    if supervisord:
        try:
            info = _supervisor(root).getProcessInfo(PROGRAM)
        except xmlrpc.client.Fault as fault:
            description = fault.faultString
        else:
            state, description = info["statename"], info["description"]
            pid = info["pid"] or None
    return HostStatus(
        root=root,
        supervisord=supervisord,
        state=state,
        pid=pid,
        description=description,
        panel_url=config.panel_url,
        router_url=config.router_url,
        panel_answers=supervisord and _port_answers(config.panel),
        router_answers=supervisord and _port_answers(config.router),
    )


def print_status(status: HostStatus) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Host at {status.root}", show_header=False)
    table.add_row("state", f"[bold]{status.state}[/bold] ({status.description})")
    table.add_row("panel (XML-RPC)", _answer(status.panel_url, status.panel_answers))
    table.add_row("router", _answer(status.router_url, status.router_answers))
    table.add_row("logs", str(status.root / "logs"))
    Console().print(table)


def _answer(url: str, answers: bool) -> str:
    return f"{url} [green]answers[/green]" if answers else f"{url} [red]does not answer[/red]"


def _root(root: Path | None) -> Path:
    return Path(root or paths.default_root()).resolve()


def _config_json(config: HostConfig) -> dict:
    data = asdict(config)
    data["root"] = str(config.root)
    return data


def read_config(root: Path) -> HostConfig:
    saved = paths.supervisor_dir(root) / "host.json"
    if not saved.exists():
        return HostConfig(root)
    data = json.loads(saved.read_text())
    return HostConfig(
        root,
        tuple(data["panel"]),
        tuple(data["router"]),
        data["wait_limit"],
        data.get("mail_port"),
        data.get("app_ports"),
        tuple(data.get("trusted_front_ends", ())),
    )


def _supervisord_conf(config: HostConfig, socket_path: Path) -> str:
    folder = socket_path.parent
    command = shlex.join(
        [
            str(Path(sys.executable).parent / "randopony-host"),
            "serve",
            "--root",
            str(config.root),
            "--panel",
            f"{config.panel[0]}:{config.panel[1]}",
            "--router",
            f"{config.router[0]}:{config.router[1]}",
            "--wait-limit",
            str(config.wait_limit),
            *(["--app-ports", config.app_ports] if config.app_ports else []),
            *(arg for a in config.trusted_front_ends for arg in ("--trusted-front-end", a)),
        ]
    )

    boot_command = shlex.join(
        [str(Path(sys.executable).parent / "randopony-host-boot"), "--root", str(config.root)]
    )
    value = supervisor.conf_value
    return f"""; Written by deploy.host.service.host_up; changes are overwritten.
; The host's code ({code_fingerprint()}): new code means a restart, as new settings do.
[unix_http_server]
file={value(socket_path)}
chmod=0700

[supervisord]
logfile={value(folder / "supervisord.log")}
pidfile={value(folder / "supervisord.pid")}
childlogdir={value(folder)}
directory={value(paths.CHECKOUT)}
; its programs create files for their owner alone (databases, rider lists, logs)
umask=077
identifier=randopony-host

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=unix://{value(socket_path)}

[program:{PROGRAM}]
command={value(command)}
directory={value(paths.CHECKOUT)}
environment=PYTHONPATH="{value(paths.CHECKOUT)}",PYTHONUNBUFFERED="1"
autostart=true
autorestart=true
startsecs=1
stopsignal=TERM
stopwaitsecs=15
redirect_stderr=true
stdout_logfile={value(paths.host_logs(config.root) / "host.log")}
stdout_logfile_maxbytes=10MB
stdout_logfile_backups=5

[program:{BOOT}]
command={value(boot_command)}
directory={value(paths.CHECKOUT)}
environment=PYTHONPATH="{value(paths.CHECKOUT)}",PYTHONUNBUFFERED="1"
autostart=true
autorestart=false
startsecs=0
exitcodes=0
redirect_stderr=true
stdout_logfile={value(boot_log(config.root))}
stdout_logfile_maxbytes=1MB
stdout_logfile_backups=2
""" + _mail_program(config, value)


def code_fingerprint() -> str:
    """The host runs the checkout's deploy/ package: a digest of it, so that host_up restarts
    a host still running older code (a router without a fix, say)."""
    digest = hashlib.sha256()
    package = paths.CHECKOUT / "deploy"
    for path in sorted(package.rglob("*.py")):
        digest.update(str(path.relative_to(package)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def _mail_program(config: HostConfig, value) -> str:
    if not config.mail_port:
        return ""
    command = shlex.join(
        [
            str(Path(sys.executable).parent / "randopony_smtp_sink"),
            "--port",
            str(config.mail_port),
            "--maildir",
            str(config.root / "mail"),
        ]
    )
    return f"""
[program:mail]
command={value(command)}
environment=PYTHONUNBUFFERED="1"
autostart=true
autorestart=true
redirect_stderr=true
stdout_logfile={value(paths.host_logs(config.root) / "mail.log")}
stdout_logfile_maxbytes=10MB
stdout_logfile_backups=2
"""


def _socket(root: Path) -> Path:
    return paths.supervisor_dir(root) / "supervisor.sock"


def _supervisor(root: Path):
    return supervisor.client(_socket(root))


def _supervisord_answers(root: Path) -> bool:
    return supervisor.answers(_socket(root))


def _port_answers(address: tuple[str, int]) -> bool:
    try:
        socket.create_connection(address, timeout=1).close()
    except OSError:
        return False
    return True


def _wait(ready, timeout: float, what: str, root: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        time.sleep(0.1)
    log = paths.host_logs(root) / "host.log"
    tail = log.read_text()[-2000:] if log.exists() else "(no host log yet)"
    raise HostServiceError(f"gave up waiting {timeout:.0f} s for {what}; host log ends:\n{tail}")
