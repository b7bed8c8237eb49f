"""The deployment target: the fabfile's module values, checked, with the host and the hosting
panel they name. The host keeps the truth (roles.json); the fabfile's values are expectations."""

from __future__ import annotations

import getpass
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from deploy.host import layout
from deploy.remote.hosts import Host, HostError, LocalHost
from deploy.remote.panel_client import HostingAPI, HostingError, LoginFailed, PanelUnreachable

CHECKOUT = Path(__file__).resolve().parents[2]
DOMAIN = re.compile(
    r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)+$"
)
PASSWORD_VARIABLE = "RANDOPONY_HOSTING_PASSWORD"


class TargetError(Exception):
    """Refused before anything changed: the message says what is wrong and how to fix it."""


def domain(value: str) -> str:
    text = str(value or "").strip().lower()
    if not DOMAIN.fullmatch(text):
        raise TargetError(f"invalid domain {value!r}")
    return text


@dataclass
class Target:
    app_name: str = "randopony"
    staging_release: str = "2026r1"
    production_release: str | None = None
    staging_domain: str = "staging.randopony.localhost"
    production_domain: str = "randopony.localhost"
    hosting_api: str = "http://127.0.0.1:8090/"  # as seen on the host
    hosting_user: str = "randopony"
    host_root: str = str(CHECKOUT / "var" / "host")
    ssh_host: str | None = None  # user@host:port; None for the local host
    ssh_key: str | None = None
    ssh_known_hosts: str | None = None
    checkout: Path = CHECKOUT
    wrangler_email: str = "wrangler@example.com"
    public_scheme: str = "http"
    public_port: int | str | None = None
    echo: Callable[[str], None] = field(default=print, repr=False)

    def checked(self) -> Target:
        """Every value validated before anything runs."""
        try:
            layout.app_name(self.app_name)
            self.staging_release = layout.release_name(self.staging_release)
            if self.production_release:
                self.production_release = layout.release_name(self.production_release)
        except layout.InvalidName as error:
            raise TargetError(str(error)) from None
        self.staging_domain = domain(self.staging_domain)
        self.production_domain = domain(self.production_domain)
        if self.staging_domain == self.production_domain:
            raise TargetError("the staging and production domains must differ")
        if self.public_scheme not in ("http", "https"):
            raise TargetError(f"public_scheme must be http or https, not {self.public_scheme!r}")
        if self.public_port in ("", None):
            self.public_port = None
        elif not re.fullmatch(r"[0-9]{1,5}", str(self.public_port)) or not (
            0 < int(self.public_port) < 65536
        ):
            raise TargetError(f"public_port must be a port number, not {self.public_port!r}")
        else:
            self.public_port = int(self.public_port)
        url = urlsplit(self.hosting_api)
        if url.scheme != "http" or not url.port:
            raise TargetError(f"hosting_api must be http://host:port/, not {self.hosting_api!r}")
        return self

    @property
    def panel_port(self) -> int:
        return urlsplit(self.hosting_api).port

    @contextmanager
    def connected(self) -> Iterator[Host]:
        """The host, checked and connected for the length of a `with`, and closed after."""
        self.checked()
        host = self.connect()
        try:
            yield host
        finally:
            host.close()

    def connect(self) -> Host:
        try:
            if self.ssh_host:
                from deploy.remote.ssh import SSHHost, parse_host_spec

                user, host, port = parse_host_spec(self.ssh_host)
                return SSHHost(
                    self.host_root,
                    host,
                    user=user,
                    port=port,
                    key_filename=self.ssh_key,
                    known_hosts=self.ssh_known_hosts,
                )
            return LocalHost(self.host_root)
        except HostError as error:
            raise TargetError(str(error)) from None

    def webapp(self, release: str) -> str:
        return layout.webapp_name(self.app_name, release)


def hosting_password(target: Target | None = None) -> str:
    """From the environment; for the local host `make run` set up, from the file it keeps
    beside the host root (var/host-password, never in git); else asked for."""
    password = os.environ.get(PASSWORD_VARIABLE)
    if password:
        return password
    if target is not None and not target.ssh_host:
        kept = Path(target.host_root).parent / "host-password"
        if kept.is_file():
            return kept.read_text().strip()
    try:
        return getpass.getpass("Hosting panel password: ")
    except (EOFError, KeyboardInterrupt):
        raise TargetError(f"no hosting panel password: set {PASSWORD_VARIABLE}") from None


@contextmanager
def hosting_session(target: Target, host: Host, password: str | None = None):
    """A logged-in panel client, reached through an SSH tunnel when the host is remote (the panel
    only listens on the host's loopback)."""
    with host.reach(target.panel_port) as local_port:
        api = HostingAPI(f"http://127.0.0.1:{local_port}/")
        try:
            api.login(target.hosting_user, password or hosting_password(target))
        except LoginFailed as error:
            raise TargetError(f"the hosting panel refused the login: {error}") from None
        except PanelUnreachable as error:
            raise TargetError(
                f"the hosting panel does not answer at {target.hosting_api} on {host.description}: "
                f"{error}. Is the host up (fab host_up)?"
            ) from None
        except HostingError as error:
            raise TargetError(f"hosting panel: {error}") from None
        yield api
