"""The host's process: the hosting panel and the router in one asyncio loop, and its commands.

    randopony-host serve [--root DIR] [--panel 127.0.0.1:8090] [--router 127.0.0.1:8080]
    randopony-host set-password [--root DIR] USERNAME   (the password from a prompt or stdin)

One process means the panel changes the router's in-memory table directly, so every change
reaches the router before the API call returns.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import ipaddress
import logging
import re
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

import uvloop
from aiohttp import web

from deploy.host import paths
from deploy.host.panel import LoginThrottle, Panel
from deploy.host.panel_store import PanelError, PanelStore
from deploy.host.paths import DEFAULT_PANEL, DEFAULT_ROUTER
from deploy.host.router import (
    BODY_TIMEOUT,
    HEADER_TIMEOUT,
    MAX_BODY,
    MAX_CLIENT_CONNECTIONS,
    Router,
)
from deploy.host.routing_table import RoutingTable

log = logging.getLogger("deploy.host.server")

DEFAULT_APP_PORTS = range(20000, 30000)


@dataclass
class HostSettings:
    root: Path
    panel: tuple[str, int] = DEFAULT_PANEL
    router: tuple[str, int] = DEFAULT_ROUTER
    wait_limit: float = 30.0
    retry_window: float = 10.0
    max_body: int = MAX_BODY
    header_timeout: float = HEADER_TIMEOUT
    body_timeout: float = BODY_TIMEOUT
    max_client_connections: int = MAX_CLIENT_CONNECTIONS
    trusted_front_ends: frozenset = frozenset()
    session_ttl: float = 3600.0
    max_login_failures: int = 5
    first_login_wait: float = 10.0
    app_ports: range = DEFAULT_APP_PORTS


def open_store(settings: HostSettings) -> PanelStore:
    return PanelStore(
        paths.panel_db(settings.root),
        paths.webapps(settings.root),
        ips=[settings.router[0]],
        ports=settings.app_ports,
    )


async def serve(settings: HostSettings, stop: asyncio.Event) -> None:
    table = RoutingTable(settings.wait_limit)
    store = open_store(settings)
    panel = Panel(
        store,
        table,
        home=str(settings.root),
        session_ttl=settings.session_ttl,
        throttle=LoginThrottle(
            settings.max_login_failures,
            first_wait=settings.first_login_wait,
            longest_wait=max(settings.first_login_wait, LoginThrottle.LONGEST_WAIT),
        ),
    )
    router = Router(
        table,
        paths.frontend_logs(settings.root),
        retry_window=settings.retry_window,
        max_body=settings.max_body,
        header_timeout=settings.header_timeout,
        body_timeout=settings.body_timeout,
        max_client_connections=settings.max_client_connections,
        trusted_front_ends=settings.trusted_front_ends,
    )
    await router.start()

    panel_app = web.Application()
    panel_app.router.add_post("/", panel.handle)
    panel_app.router.add_post("/RPC2", panel.handle)
    panel_runner = web.AppRunner(panel_app, access_log=None)
    # The low-level server: no URL dispatch on the hot path, and no aiohttp access log
    # (the router writes its own, per website).
    router_runner = web.ServerRunner(router.make_server(), shutdown_timeout=5)
    await panel_runner.setup()
    await router_runner.setup()
    try:
        await web.TCPSite(panel_runner, *settings.panel).start()
        await web.TCPSite(router_runner, *settings.router, backlog=1024).start()
        if not store.has_accounts():
            log.warning("no account yet: create one with randopony-host set-password")
        log.info(
            "panel on http://%s:%s/, router on http://%s:%s/, host root %s",
            *settings.panel,
            *settings.router,
            settings.root,
        )
        await stop.wait()
        log.info("stopping")
    finally:
        await panel_runner.cleanup()
        await router_runner.cleanup()
        await router.stop()
        store.close()


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, not {text!r}")
    return host, int(port)


def _seconds(text: str) -> float:
    if not re.fullmatch(r"[0-9]{1,6}(\.[0-9]{1,6})?", text) or float(text) <= 0:
        raise argparse.ArgumentTypeError(f"expected a number of seconds above 0, not {text!r}")
    return float(text)


def _count(text: str) -> int:
    if not re.fullmatch(r"[1-9][0-9]{0,5}", text):
        raise argparse.ArgumentTypeError(f"expected a whole number from 1, not {text!r}")
    return int(text)


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an IP address, not {text!r}") from None


def _port_range(text: str) -> range:
    first, _, last = text.partition("-")
    if not (first.isdigit() and last.isdigit() and 1024 <= int(first) <= int(last) <= 65535):
        raise argparse.ArgumentTypeError(f"expected FIRST-LAST ports, not {text!r}")
    return range(int(first), int(last) + 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="randopony-host", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("serve", help="run the panel and the router")
    run.add_argument("--root", type=Path, default=paths.default_root())
    run.add_argument("--panel", type=_address, default=DEFAULT_PANEL, metavar="HOST:PORT")
    run.add_argument("--router", type=_address, default=DEFAULT_ROUTER, metavar="HOST:PORT")
    run.add_argument(
        "--wait-limit",
        type=_seconds,
        default=30.0,
        metavar="SECONDS",
        help="how long requests wait for a moving domain (then 404) or held writes (then 503)",
    )
    run.add_argument(
        "--retry-window",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="how long a request waits for an app that refuses (restarting) before a 502",
    )
    run.add_argument(
        "--max-body",
        type=int,
        default=MAX_BODY,
        metavar="BYTES",
        help="the largest request body passed on to an app; larger ones get 413",
    )
    run.add_argument(
        "--header-timeout",
        type=_seconds,
        default=HEADER_TIMEOUT,
        metavar="SECONDS",
        help="how long a connection may take to send a whole request head (and stay idle)",
    )
    run.add_argument(
        "--body-timeout",
        type=_seconds,
        default=BODY_TIMEOUT,
        metavar="SECONDS",
        help="how long a client may take to send a whole request body; slower ones get 408",
    )
    run.add_argument(
        "--max-client-connections",
        type=_count,
        default=MAX_CLIENT_CONNECTIONS,
        metavar="N",
        help="open connections to the router per client address; more are refused (503)",
    )
    run.add_argument(
        "--trusted-front-end",
        type=_ip,
        action="append",
        default=[],
        metavar="ADDRESS",
        help="a proxy whose X-Forwarded-Proto (http or https) is passed on (repeatable)",
    )
    run.add_argument("--session-ttl", type=float, default=3600.0, metavar="SECONDS")
    run.add_argument(
        "--max-login-failures",
        type=int,
        default=5,
        help="failed logins per username or client before each further one doubles the wait",
    )
    run.add_argument(
        "--first-login-wait",
        type=_seconds,
        default=10.0,
        metavar="SECONDS",
        help="the wait after the free failures, doubled by each further one (up to 5 min)",
    )
    run.add_argument(
        "--app-ports", type=_port_range, default=DEFAULT_APP_PORTS, metavar="FIRST-LAST"
    )
    account = commands.add_parser("set-password", help="create an account or change its password")
    account.add_argument("--root", type=Path, default=paths.default_root())
    account.add_argument("username")
    args = parser.parse_args(argv)

    if args.command == "set-password":
        return _set_password(args.root, args.username)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    settings = HostSettings(
        root=args.root.resolve(),
        panel=args.panel,
        router=args.router,
        wait_limit=args.wait_limit,
        retry_window=args.retry_window,
        max_body=args.max_body,
        header_timeout=args.header_timeout,
        body_timeout=args.body_timeout,
        max_client_connections=args.max_client_connections,
        trusted_front_ends=frozenset(args.trusted_front_end),
        session_ttl=args.session_ttl,
        max_login_failures=args.max_login_failures,
        first_login_wait=args.first_login_wait,
        app_ports=args.app_ports,
    )
    # uvloop's event loop takes a fifth to a third off the router's per-request overhead.
    uvloop.run(_run(settings))
    return 0


async def _run(settings: HostSettings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await serve(settings, stop)


def _set_password(root: Path, username: str) -> int:
    if sys.stdin.isatty():
        password = getpass.getpass(f"Password for {username}: ")
        if getpass.getpass("Again: ") != password:
            print("The passwords differ; nothing changed.", file=sys.stderr)
            return 1
    else:
        password = sys.stdin.readline().rstrip("\n")
    store = open_store(HostSettings(root=root.resolve()))
    try:
        store.set_password(username, password)
    except PanelError as error:
        print(f"Not changed: {error.message}", file=sys.stderr)
        return 1
    finally:
        store.close()
    print(f"Account {username} is ready on the host at {root}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
