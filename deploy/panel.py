"""The hosting panel's XML-RPC API, Webfaction style: `login` first, then the session id first.

Every successful change is pushed into the router's `RoutingTable` before the call returns.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
import secrets
import socket
import time
import xmlrpc.client
from collections import defaultdict, deque

from aiohttp import web
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from deploy.hosting_api import FaultCode
from deploy.panel_store import APP_TYPES, PanelError, PanelStore
from deploy.routing_table import RoutingTable

log = logging.getLogger("deploy.panel")

# Verifying against this keeps a wrong username as slow as a wrong password.
_DUMMY_HASH = PasswordHasher().hash("not a real password")
# The address of the client whose call is running (each aiohttp request runs in its own task).
_client = contextvars.ContextVar("client", default="?")


class LoginThrottle:
    """Refuses logins for a username or a client after too many failures in a window."""

    def __init__(self, max_failures: int = 5, window: float = 60.0):
        self.max_failures = max_failures
        self.window = window
        self._failures: dict[str, deque] = defaultdict(deque)

    def retry_after(self, *keys: str) -> float:
        now = time.monotonic()
        wait = 0.0
        for key in keys:
            failures = self._failures.get(key)
            if not failures:
                continue
            while failures and failures[0] <= now - self.window:
                failures.popleft()
            if len(failures) >= self.max_failures:
                wait = max(wait, failures[0] + self.window - now)
        return wait

    def failed(self, *keys: str) -> None:
        now = time.monotonic()
        for key in keys:
            self._failures[key].append(now)

    def succeeded(self, username_key: str) -> None:
        self._failures.pop(username_key, None)


class Panel:
    def __init__(
        self,
        store: PanelStore,
        table: RoutingTable,
        home: str,
        session_ttl: float = 3600.0,
        throttle: LoginThrottle | None = None,
    ):
        self.store = store
        self.table = table
        self.home = home
        self.session_ttl = session_ttl
        self.throttle = throttle or LoginThrottle()
        self._sessions: dict[str, tuple[str, float]] = {}
        self.methods = {
            "login": self.login,
            "list_ips": self.list_ips,
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
        try:
            params, method = xmlrpc.client.loads(await request.read())
        except Exception:
            return _fault(FaultCode.INVALID, "the request body is not an XML-RPC call")
        function = self.methods.get(method)
        if function is None:
            return _fault(FaultCode.UNKNOWN_METHOD, f"unknown method {method!r}")
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

    async def login(self, username, password, machine=None, version=None):
        if not isinstance(username, str) or not isinstance(password, str):
            raise PanelError(FaultCode.INVALID, "login takes a username and a password (strings)")
        keys = (f"user:{username}", f"client:{_client.get()}")
        wait = self.throttle.retry_after(*keys)
        if wait > 0:
            raise PanelError(
                FaultCode.RATE_LIMITED,
                f"too many failed logins; try again in {int(wait) + 1} s",
            )
        stored = self.store.password_hash(username)
        ok = await asyncio.to_thread(_verify, stored or _DUMMY_HASH, password)
        if not ok or stored is None:
            self.throttle.failed(*keys)
            log.warning("failed login for %r from %s", username, _client.get())
            raise PanelError(FaultCode.LOGIN_FAILED, "login failed: wrong username or password")
        self.throttle.succeeded(keys[0])
        session_id = secrets.token_hex(16)
        self._sessions[session_id] = (username, time.monotonic() + self.session_ttl)
        log.info("%s logged in from %s", username, _client.get())
        return [session_id, {"id": 1, "username": username, "home": self.home}]

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

    def list_ips(self, session_id):
        self._check_session(session_id)
        machine = socket.gethostname()
        return [
            {"machine": machine, "ip": ip, "is_main": i == 0} for i, ip in enumerate(self.store.ips)
        ]

    def list_app_types(self, session_id):
        self._check_session(session_id)
        return [
            {"name": name, "label": label, "autostart": False, "open_port": True}
            for name, label in sorted(APP_TYPES.items())
        ]

    def list_apps(self, session_id):
        self._check_session(session_id)
        return self.store.list_apps()

    def create_app(self, session_id, name, type, autostart, extra_info, open_port):
        self._check_session(session_id)
        return self.store.create_app(name, type, autostart, extra_info, open_port)

    def delete_app(self, session_id, name):
        self._check_session(session_id)
        app = self.store.delete_app(name)
        self._publish()
        return app

    def list_websites(self, session_id):
        self._check_session(session_id)
        return self.store.list_websites()

    def create_website(self, session_id, name, ip, https, subdomains, *site_apps):
        self._check_session(session_id)
        site = self.store.create_website(name, ip, https, subdomains, site_apps)
        self._publish()
        return site

    def update_website(self, session_id, name, ip, https, subdomains, *site_apps):
        self._check_session(session_id)
        site = self.store.update_website(name, ip, https, subdomains, site_apps)
        self._publish()
        return site

    def delete_website(self, session_id, name, ip):
        self._check_session(session_id)
        site = self.store.delete_website(name, ip)
        self._publish()
        return site

    # extensions of this panel (see deploy.hosting_api)

    async def hold_writes(self, session_id, website, seconds=300.0):
        """Hold new writes, then answer once the writes already under way have finished, so the
        caller may copy the database knowing nothing more will be written to it."""
        self._check_session(session_id)
        self.store.get_website(website)
        if not isinstance(seconds, int | float) or not 0 < seconds <= 3600:
            raise PanelError(FaultCode.INVALID, "seconds must be a number between 0 and 3600")
        domains = self.table.hold(website, float(seconds))
        if not domains:
            raise PanelError(FaultCode.INVALID, f"website {website!r} has no domains to hold")
        log.info("holding writes to %s for %s", website, ", ".join(domains))
        if not await self.table.until(lambda: not self.table.writes_in_flight(domains), seconds):
            self.table.release(website)
            raise PanelError(
                FaultCode.CONFLICT, f"writes to {website} did not finish; hold released"
            )
        return domains

    async def wait_app_idle(self, session_id, name, timeout=30.0):
        """Answer once no request routed to the app is under way (or the timeout passed);
        returns how many still are (0: idle). For stopping an old release without cutting off
        a request."""
        self._check_session(session_id)
        port = self.store.get_app(name)["port"]
        if not isinstance(timeout, int | float) or not 0 <= timeout <= 3600:
            raise PanelError(FaultCode.INVALID, "timeout must be a number between 0 and 3600")
        await self.table.until(lambda: not self.table.in_flight(port), float(timeout))
        return self.table.in_flight(port)

    def release_writes(self, session_id, website):
        self._check_session(session_id)
        domains = self.table.release(website)
        log.info("released writes to %s: %s", website, ", ".join(domains) or "none held")
        return domains

    def held_requests(self, session_id, name):
        """How many requests wait at the router for a website's domains (held writes), or for
        one domain (held writes, or a domain moving between websites)."""
        self._check_session(session_id)
        if isinstance(name, str) and "." in name:
            return self.table.waiting([name.lower()])
        self.store.get_website(name)
        return self.table.waiting(self.table.domains_of(name))

    async def app_answers(self, session_id, name):
        self._check_session(session_id)
        port = self.store.get_app(name)["port"]
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


def _describe(function) -> str:
    parameters = list(inspect.signature(function).parameters.values())
    return "(" + ", ".join(str(p) for p in parameters) + ")"


def _fault(code: int, message: str) -> web.Response:
    body = xmlrpc.client.dumps(xmlrpc.client.Fault(int(code), message), methodresponse=True)
    return web.Response(body=body.encode(), content_type="text/xml")
