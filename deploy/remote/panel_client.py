"""A typed client for a Webfaction-compatible hosting panel (XML-RPC, session id first).

It speaks the protocol the seed workflow used, so it works against this project's panel or any
compatible endpoint, plus the extensions of this project's panel (see deploy/panel_wire.py).
"""

from __future__ import annotations

import xmlrpc.client
from dataclasses import dataclass

from deploy.panel_wire import FaultCode


class HostingError(Exception):
    """Anything that went wrong talking to the panel."""


class PanelUnreachable(HostingError):
    """No panel answered at the URL (not running, wrong port, or not an XML-RPC endpoint)."""


class HostingFault(HostingError):
    """The panel refused a call; nothing was changed."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


class InvalidInput(HostingFault):
    pass


class NotFound(HostingFault):
    pass


class Conflict(HostingFault):
    pass


class InUse(HostingFault):
    pass


class LoginFailed(HostingFault):
    pass


class SessionInvalid(HostingFault):
    pass


class RateLimited(HostingFault):
    pass


FAULT_TYPES = {
    FaultCode.INVALID: InvalidInput,
    FaultCode.NOT_FOUND: NotFound,
    FaultCode.CONFLICT: Conflict,
    FaultCode.IN_USE: InUse,
    FaultCode.LOGIN_FAILED: LoginFailed,
    FaultCode.SESSION: SessionInvalid,
    FaultCode.RATE_LIMITED: RateLimited,
}


@dataclass(frozen=True)
class App:
    name: str
    type: str
    port: int
    autostart: bool = False
    extra_info: str = ""
    open_port: bool = False

    @classmethod
    def from_wire(cls, data: dict) -> App:
        return cls(
            name=data["name"],
            type=data["type"],
            port=int(data["port"]),
            autostart=bool(data.get("autostart", False)),
            extra_info=data.get("extra_info", ""),
            open_port=bool(data.get("open_port", False)),
        )


@dataclass(frozen=True)
class Domain:
    """A domain and its sub-domains' names ("staging" of "staging.randopony.example.org")."""

    domain: str
    subdomains: tuple[str, ...] = ()
    id: int | None = None

    @classmethod
    def from_wire(cls, data: dict) -> Domain:
        return cls(domain=data["domain"], subdomains=tuple(data["subdomains"]), id=data.get("id"))

    @property
    def names(self) -> tuple[str, ...]:
        """The full names it lets a website serve."""
        return (self.domain, *(f"{sub}.{self.domain}" for sub in self.subdomains))


@dataclass(frozen=True)
class Website:
    name: str
    ip: str
    https: bool
    subdomains: tuple[str, ...]
    website_apps: tuple[tuple[str, str], ...]

    @classmethod
    def from_wire(cls, data: dict) -> Website:
        return cls(
            name=data["name"],
            ip=data["ip"],
            https=bool(data["https"]),
            subdomains=tuple(data["subdomains"]),
            website_apps=tuple((app, path) for app, path in data["website_apps"]),
        )


class HostingAPI:
    """One logged-in session with a panel.

    After `login`, a call refused because the session expired logs in again once and retries:
    such a call changed nothing, so the retry is safe.
    """

    def __init__(self, url: str, timeout: float = 30.0):
        self.url = url
        self.timeout = timeout
        self.session_id: str | None = None
        self.account: dict | None = None
        self._credentials: tuple[str, str] | None = None

    def login(self, username: str, password: str) -> dict:
        self.session_id, self.account = self._call("login", username, password)
        self._credentials = (username, password)
        return self.account

    def list_ips(self) -> list[str]:
        return [entry["ip"] for entry in self._session_call("list_ips")]

    def list_machines(self) -> list[dict]:
        return list(self._session_call("list_machines"))

    def list_domains(self) -> list[Domain]:
        return [Domain.from_wire(domain) for domain in self._session_call("list_domains")]

    def create_domain(self, domain: str, *subdomains: str) -> Domain:
        """Create the domain, or add sub-domains to one the account has."""
        return Domain.from_wire(self._session_call("create_domain", domain, *subdomains))

    def delete_domain(self, domain: str, *subdomains: str) -> Domain:
        """Delete those sub-domains, or with none named the domain and all its sub-domains."""
        return Domain.from_wire(self._session_call("delete_domain", domain, *subdomains))

    def ensure_domain(self, name: str) -> Domain | None:
        """Create a full name when the account has not: as a sub-domain of the account's domain
        nearest above it, or else as a domain of its own. Returns what was created (None: it
        was there already). Works with any Webfaction-compatible panel."""
        name = name.lower().removesuffix(".")
        domains = self.list_domains()
        if any(name in domain.names for domain in domains):
            return None
        above = [domain.domain for domain in domains if name.endswith("." + domain.domain)]
        if above:
            parent = max(above, key=len)
            return self.create_domain(parent, name.removesuffix("." + parent))
        return self.create_domain(name)

    def list_app_types(self) -> list[str]:
        return [entry["name"] for entry in self._session_call("list_app_types")]

    def list_apps(self) -> list[App]:
        return [App.from_wire(app) for app in self._session_call("list_apps")]

    def app(self, name: str) -> App | None:
        return next((app for app in self.list_apps() if app.name == name), None)

    def create_app(
        self,
        name: str,
        type: str = "custom_app_with_port",
        autostart: bool = False,
        extra_info: str = "",
        open_port: bool = False,
    ) -> App:
        created = self._session_call("create_app", name, type, autostart, extra_info, open_port)
        return App.from_wire(created)

    def delete_app(self, name: str) -> None:
        self._session_call("delete_app", name)

    def list_websites(self) -> list[Website]:
        return [Website.from_wire(site) for site in self._session_call("list_websites")]

    def website(self, name: str) -> Website | None:
        return next((site for site in self.list_websites() if site.name == name), None)

    def create_website(
        self,
        name: str,
        ip: str,
        https: bool,
        subdomains: list[str],
        site_apps: list[tuple[str, str]],
    ) -> Website:
        created = self._session_call(
            "create_website", name, ip, https, list(subdomains), *[list(a) for a in site_apps]
        )
        return Website.from_wire(created)

    def update_website(
        self,
        name: str,
        ip: str,
        https: bool,
        subdomains: list[str],
        site_apps: list[tuple[str, str]],
    ) -> Website:
        updated = self._session_call(
            "update_website", name, ip, https, list(subdomains), *[list(a) for a in site_apps]
        )
        return Website.from_wire(updated)

    def delete_website(self, name: str, ip: str) -> None:
        self._session_call("delete_website", name, ip)

    def hold_writes(self, website: str, seconds: float = 300.0) -> list[str]:
        """Extension: hold writes to the website's domains; returns the domains held."""
        return list(self._session_call("hold_writes", website, float(seconds)))

    def release_writes(self, website: str) -> list[str]:
        """Extension: let held writes go on; returns the domains released."""
        return list(self._session_call("release_writes", website))

    def held_requests(self, website_or_domain: str) -> int:
        """Extension: how many requests wait at the router right now for a website's domains,
        or for one domain (a name with a dot)."""
        return int(self._session_call("held_requests", website_or_domain))

    def wait_app_idle(self, name: str, timeout: float = 30.0) -> int:
        """Extension: wait until no request to the app is under way; returns how many still are."""
        return int(self._session_call("wait_app_idle", name, float(timeout)))

    def app_answers(self, name: str) -> bool:
        """Extension: whether something accepts connections on the app's port."""
        return bool(self._session_call("app_answers", name))

    def _session_call(self, method: str, *args):
        if self.session_id is None:
            raise SessionInvalid(FaultCode.SESSION, "not logged in: call login() first")
        try:
            return self._call(method, self.session_id, *args)
        except SessionInvalid:
            if self._credentials is None:
                raise
            self.login(*self._credentials)
            return self._call(method, self.session_id, *args)

    def _call(self, method: str, *args):
        # A proxy per call: ServerProxy is not thread safe and holds no state we need.
        proxy = xmlrpc.client.ServerProxy(self.url, transport=_TimeoutTransport(self.timeout))
        try:
            return getattr(proxy, method)(*args)
        except xmlrpc.client.Fault as fault:
            kind = FAULT_TYPES.get(fault.faultCode, HostingFault)
            raise kind(fault.faultCode, fault.faultString) from None
        except (OSError, xmlrpc.client.ProtocolError, xmlrpc.client.ResponseError) as error:
            raise PanelUnreachable(f"no hosting panel answers at {self.url}: {error}") from None


class _TimeoutTransport(xmlrpc.client.Transport):
    def __init__(self, timeout: float):
        super().__init__()
        self.timeout = timeout

    def make_connection(self, host):
        connection = super().make_connection(host)
        connection.timeout = self.timeout
        return connection


def panel_answers(url: str, timeout: float = 2.0) -> bool:
    """Whether an XML-RPC endpoint answers at url (a Fault counts: something is speaking it)."""
    try:
        HostingAPI(url, timeout)._call("system.listMethods")
    except HostingFault:
        return True
    except PanelUnreachable:
        return False
    return True
