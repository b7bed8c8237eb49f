"""The hosting panel's XML-RPC API, Webfaction style: `login` first, then the session id first.

The methods keep Webfaction's documented names and argument order, so a client written for
Webfaction's API (xmlrpc.client, an Ansible module) works here unchanged: domains
(`create_domain(session, domain, *subdomains)`), apps, websites (`site_apps` as trailing
`[app, path]` pairs), ips and machines. Every successful change is pushed into the router's
`RoutingTable` before the call returns. Each account sees and changes only its own domains, apps
and websites (see deploy.host.panel_store).
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
import math
import secrets
import time
import xmlrpc.client
from dataclasses import dataclass

from aiohttp import web
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from defusedxml import DefusedXmlException
from defusedxml.xmlrpc import DefusedExpatParser

from deploy.host.machine import Machine, this_machine
from deploy.host.panel_store import APP_TYPES, PanelError, PanelStore, short
from deploy.host.routing_table import RoutingTable
from deploy.panel_wire import FaultCode

log = logging.getLogger("deploy.host.panel")

# Verifying against this keeps a wrong username as slow as a wrong password.
_DUMMY_HASH = PasswordHasher().hash("not a real password")
# The address of the client whose call is running (each aiohttp request runs in its own task).
_client = contextvars.ContextVar("client", default="?")


# A whole XML-RPC call to this panel is a few kilobytes; the cap keeps parsing short, since
# the panel shares its event loop with the router.
MAX_REQUEST = 1024 * 1024
# Argon2 hashes whatever it is given: the cap keeps one login from costing more than a guess.
MAX_PASSWORD = 1024
MAX_USERNAME = 256
# Webfaction's API versions: 2 added the machine argument; both answer alike here.
API_VERSIONS = (1, 2)


@dataclass
class _Attempts:
    count: int
    last: float


class LoginThrottle:
    """Exponential backoff on failed logins, per key (a username, a client address).

    The first `max_failures` failures are free; from then on each one doubles the wait before
    the next attempt, from `first_wait` up to `longest_wait`. The cap is what a stranger who
    knows the maintainer's username can impose on the maintainer; the doubling is what makes
    guessing slow. An attempt counts as a failure from the moment it is taken (before the
    password is verified), so parallel guesses are all counted before any is verified; a
    success gives the username a clean record and the client its attempt back.
    """

    LONGEST_WAIT = 300.0

    def __init__(
        self,
        max_failures: int = 5,
        first_wait: float = 10.0,
        longest_wait: float = LONGEST_WAIT,
        forget_after: float = 600.0,
        clock=time.monotonic,
    ):
        self.max_failures = max_failures
        self.first_wait = first_wait
        self.longest_wait = longest_wait
        self.forget_after = forget_after
        self.clock = clock
        self._attempts: dict[str, _Attempts] = {}

    def take(self, *keys: str) -> None:
        """Count an attempt for every key, or raise RATE_LIMITED (counting nothing)."""
        now = self.clock()
        self._forget_old(now)
        wait = max(self._remaining(key, now) for key in keys)
        if wait > 0:
            raise PanelError(
                FaultCode.RATE_LIMITED,
                f"too many failed logins; try again in {math.ceil(wait)} s",
            )
        for key in keys:
            attempts = self._attempts.setdefault(key, _Attempts(0, now))
            attempts.count += 1
            attempts.last = now

    def succeeded(self, username_key: str, *other_keys: str) -> None:
        self._attempts.pop(username_key, None)
        for key in other_keys:
            attempts = self._attempts.get(key)
            if attempts is not None:
                attempts.count -= 1
                if attempts.count <= 0:
                    del self._attempts[key]

    def _wait(self, count: int) -> float:
        if count < self.max_failures:
            return 0.0
        doublings = min(count - self.max_failures, 32)
        return min(self.longest_wait, self.first_wait * 2**doublings)

    def _remaining(self, key: str, now: float) -> float:
        attempts = self._attempts.get(key)
        if attempts is None:
            return 0.0
        return attempts.last + self._wait(attempts.count) - now

    def _forget_old(self, now: float) -> None:
        # Quiet keys are forgotten, so guessing random usernames cannot grow this for ever.
        stale = [
            key
            for key, attempts in self._attempts.items()
            if now - attempts.last > self._wait(attempts.count) + self.forget_after
        ]
        for key in stale:
            del self._attempts[key]


class Panel:
    def __init__(
        self,
        store: PanelStore,
        table: RoutingTable,
        home: str,
        session_ttl: float = 3600.0,
        throttle: LoginThrottle | None = None,
        machine: Machine | None = None,
    ):
        self.store = store
        self.machine = machine or this_machine()
        self.table = table
        self.home = home
        self.session_ttl = session_ttl
        self.throttle = throttle or LoginThrottle()
        self._sessions: dict[str, tuple[str, float]] = {}
        # Website -> the account that holds its writes, so only that account releases them,
        # even after the website is gone.
        self._holders: dict[str, str] = {}
        self.methods = {
            "login": self.login,
            "list_machines": self.list_machines,
            "list_ips": self.list_ips,
            "list_domains": self.list_domains,
            "create_domain": self.create_domain,
            "delete_domain": self.delete_domain,
            "list_app_types": self.list_app_types,
            "list_apps": self.list_apps,
            "create_app": self.create_app,
            "delete_app": self.delete_app,
            "list_websites": self.list_websites,
            "create_website": self.create_website,
            "update_website": self.update_website,
            "delete_website": self.delete_website,
            "hold_writes": self.hold_writes,
            "wait_app_idle": self.wait_app_idle,
            "release_writes": self.release_writes,
            "held_requests": self.held_requests,
            "app_answers": self.app_answers,
            "system.listMethods": self.list_methods,
        }
        table.replace(store.routes())

    async def handle(self, request: web.Request) -> web.Response:
        body = await _read_body(request)
        if body is None:
            return _fault(
                FaultCode.INVALID, f"the request body is larger than {MAX_REQUEST} bytes; refused"
            )
        try:
            params, method = _parse_call(body)
        except DefusedXmlException:
            return _fault(FaultCode.INVALID, "XML with a DOCTYPE or entities is refused")
        except Exception:
            return _fault(FaultCode.INVALID, "the request body is not an XML-RPC call")
        if not isinstance(method, str):
            return _fault(FaultCode.INVALID, "the request body is not an XML-RPC call")
        function = self.methods.get(method)
        if function is None:
            return _fault(FaultCode.UNKNOWN_METHOD, f"unknown method {short(method)}")
        try:
            inspect.signature(function).bind(*params)
        except TypeError:
            return _fault(FaultCode.INVALID, f"{method} takes {_describe(function)}")
        _client.set(request.remote or "?")
        try:
            result = function(*params)
            if inspect.isawaitable(result):
                result = await result
        except PanelError as error:
            # Arguments are not logged: login's include a password.
            log.info("%s refused: %s", method, error.message)
            return _fault(error.code, error.message)
        except Exception:
            log.exception("%s failed", method)
            return _fault(FaultCode.INTERNAL, f"{method} failed on the panel; see the host log")
        if method not in ("login", "system.listMethods") and not method.startswith("list_"):
            log.info("%s done", method)
        body = xmlrpc.client.dumps((result,), methodresponse=True)
        return web.Response(body=body.encode(), content_type="text/xml")

    # sessions

    async def login(self, username, password, machine=None, api_version=None):
        if not isinstance(username, str) or not isinstance(password, str):
            raise PanelError(FaultCode.INVALID, "login takes a username and a password (strings)")
        if len(username) > MAX_USERNAME or len(password) > MAX_PASSWORD:
            raise PanelError(
                FaultCode.INVALID,
                f"a username has at most {MAX_USERNAME} characters, "
                f"a password at most {MAX_PASSWORD}",
            )
        if machine is not None and not isinstance(machine, str):
            raise PanelError(FaultCode.INVALID, f"machine {short(machine)} must be a string")
        if api_version is not None and (
            isinstance(api_version, bool) or api_version not in API_VERSIONS
        ):
            raise PanelError(
                FaultCode.INVALID,
                f"unknown api_version {short(api_version)}: this panel speaks "
                + " and ".join(map(str, API_VERSIONS)),
            )
        keys = (f"user:{username}", f"client:{_client.get()}")
        # Taken before the (awaited) verify, so parallel guesses cannot all get past the limit.
        self.throttle.take(*keys)
        stored = self.store.password_hash(username)
        ok = await asyncio.to_thread(_verify, stored or _DUMMY_HASH, password)
        if not ok or stored is None:
            log.warning("failed login for %s from %s", short(username), _client.get())
            raise PanelError(FaultCode.LOGIN_FAILED, "login failed: wrong username or password")
        self.throttle.succeeded(*keys)
        # Checked once the password is: the machine's name is for the account's eyes.
        if machine not in (None, "") and machine.lower() != self.machine.name.lower():
            raise PanelError(
                FaultCode.NOT_FOUND,
                f"no machine named {short(machine)}: this account has one, {self.machine.name!r}",
            )
        session_id = secrets.token_hex(16)
        self._sessions[session_id] = (username, time.monotonic() + self.session_ttl)
        log.info("%s logged in from %s", username, _client.get())
        account = {
            "id": self.store.account_id(username),
            "username": username,
            "home": self.home,
            # One machine serves the account's websites and sends its mail (no mailboxes here).
            "web_server": self.machine.name,
            "mail_server": self.machine.name,
        }
        return [session_id, account]

    def _check_session(self, session_id) -> str:
        now = time.monotonic()
        entry = self._sessions.get(session_id) if isinstance(session_id, str) else None
        if entry is None or entry[1] <= now:
            self._sessions.pop(session_id, None) if isinstance(session_id, str) else None
            raise PanelError(FaultCode.SESSION, "unknown or expired session; log in again")
        # Sessions expire after ttl without use, like a web login.
        self._sessions[session_id] = (entry[0], now + self.session_ttl)
        return entry[0]

    # the Webfaction methods

    def list_machines(self, session_id):
        self._check_session(session_id)
        return [self.machine.as_wire()]

    def list_ips(self, session_id):
        self._check_session(session_id)
        return [
            {"machine": self.machine.name, "ip": ip, "is_main": i == 0}
            for i, ip in enumerate(self.store.ips)
        ]

    def list_domains(self, session_id):
        return self.store.list_domains(self._check_session(session_id))

    def create_domain(self, session_id, domain, *subdomains):
        owner = self._check_session(session_id)
        return self.store.create_domain(owner, domain, subdomains)

    def delete_domain(self, session_id, domain, *subdomains):
        # Only a name no website serves can go, so the router's table stays as it is.
        return self.store.delete_domain(self._check_session(session_id), domain, subdomains)

    def list_app_types(self, session_id):
        self._check_session(session_id)
        return [
            {"name": name, "label": label, "autostart": False, "open_port": True}
            for name, label in sorted(APP_TYPES.items())
        ]

    def list_apps(self, session_id):
        return self.store.list_apps(self._check_session(session_id))

    def create_app(self, session_id, name, type, autostart, extra_info, open_port):
        owner = self._check_session(session_id)
        return self.store.create_app(owner, name, type, autostart, extra_info, open_port)

    def delete_app(self, session_id, name):
        app = self.store.delete_app(self._check_session(session_id), name)
        self._publish()
        return app

    def list_websites(self, session_id):
        return self.store.list_websites(self._check_session(session_id))

    def create_website(self, session_id, name, ip, https, subdomains, *site_apps):
        owner = self._check_session(session_id)
        site = self.store.create_website(owner, name, ip, https, subdomains, site_apps)
        self._publish()
        return site

    def update_website(self, session_id, name, ip, https, subdomains, *site_apps):
        owner = self._check_session(session_id)
        site = self.store.update_website(owner, name, ip, https, subdomains, site_apps)
        self._publish()
        return site

    def delete_website(self, session_id, name, ip):
        site = self.store.delete_website(self._check_session(session_id), name, ip)
        self._publish()
        return site

    # extensions of this panel (see deploy.remote.panel_client)

    async def hold_writes(self, session_id, website, seconds=300.0):
        """Hold new writes, then answer once the writes already under way have finished, so the
        caller may copy the database knowing nothing more will be written to it."""
        owner = self._check_session(session_id)
        self.store.get_website(owner, website)
        if not isinstance(seconds, int | float) or not 0 < seconds <= 3600:
            raise PanelError(FaultCode.INVALID, "seconds must be a number between 0 and 3600")
        domains = self.table.hold(website, float(seconds))
        if not domains:
            raise PanelError(FaultCode.INVALID, f"website {website!r} has no domains to hold")
        self._holders[website] = owner
        log.info("holding writes to %s for %s", website, ", ".join(domains))
        if not await self.table.until(lambda: not self.table.writes_in_flight(domains), seconds):
            self.table.release(website)
            self._holders.pop(website, None)
            raise PanelError(
                FaultCode.CONFLICT, f"writes to {website} did not finish; hold released"
            )
        return domains

    async def wait_app_idle(self, session_id, name, timeout=30.0):
        """Answer once no request routed to the app is under way (or the timeout passed);
        returns how many still are (0: idle). For stopping an old release without cutting off
        a request."""
        port = self.store.get_app(self._check_session(session_id), name)["port"]
        if not isinstance(timeout, int | float) or not 0 <= timeout <= 3600:
            raise PanelError(FaultCode.INVALID, "timeout must be a number between 0 and 3600")
        await self.table.until(lambda: not self.table.in_flight(port), float(timeout))
        return self.table.in_flight(port)

    def release_writes(self, session_id, website):
        owner = self._check_session(session_id)
        if not isinstance(website, str) or self._holders.get(website) != owner:
            self.store.get_website(owner, website)
        self._holders.pop(website, None)
        domains = self.table.release(website)
        log.info("released writes to %s: %s", website, ", ".join(domains) or "none held")
        return domains

    def held_requests(self, session_id, name):
        """How many requests wait at the router for a website's domains (held writes), or for
        one domain (held writes, or a domain moving between websites)."""
        owner = self._check_session(session_id)
        if isinstance(name, str) and "." in name:
            domain = name.lower()
            if self.store.domain_owner(domain) != owner:
                raise PanelError(FaultCode.NOT_FOUND, f"no website or domain named {short(name)}")
            return self.table.waiting([domain])
        self.store.get_website(owner, name)
        return self.table.waiting(self.table.domains_of(name))

    async def app_answers(self, session_id, name):
        port = self.store.get_app(self._check_session(session_id), name)["port"]
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 2.0)
        except (OSError, TimeoutError):
            return False
        writer.close()
        return True

    def list_methods(self):
        return sorted(self.methods)

    def _publish(self) -> None:
        self.table.replace(self.store.routes())


def _verify(hash_: str, password: str) -> bool:
    try:
        return PasswordHasher().verify(hash_, password)
    except (VerificationError, InvalidHashError):
        return False


async def _read_body(request: web.Request) -> bytes | None:
    """The whole body, or None past MAX_REQUEST (left unread when its length says so)."""
    if request.content_length is not None and request.content_length > MAX_REQUEST:
        return None
    body = bytearray()
    async for chunk in request.content.iter_chunked(64 * 1024):
        body += chunk
        if len(body) > MAX_REQUEST:
            return None
    return bytes(body)


def _parse_call(body: bytes) -> tuple[tuple, str | None]:
    """xmlrpc.client.loads, with a parser that refuses a DOCTYPE before expanding anything
    (a kilobyte of nested entities expands to gigabytes)."""
    unmarshaller = xmlrpc.client.Unmarshaller()
    parser = DefusedExpatParser(unmarshaller, forbid_dtd=True)
    parser.feed(body)
    parser.close()
    return unmarshaller.close(), unmarshaller.getmethodname()


def _describe(function) -> str:
    parameters = list(inspect.signature(function).parameters.values())
    return "(" + ", ".join(str(p) for p in parameters) + ")"


def _fault(code: int, message: str) -> web.Response:
    body = xmlrpc.client.dumps(xmlrpc.client.Fault(int(code), message), methodresponse=True)
    return web.Response(body=body.encode(), content_type="text/xml")
