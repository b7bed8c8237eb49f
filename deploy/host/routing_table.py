"""The router's view of the panel's websites: which domain goes to which app port.

Two kinds of waiting live here, because a Webfaction client moves a domain in two calls and a
promotion holds writes while it copies the database:

- a domain detached from its website within the last `wait_limit` seconds is *moving*: requests
  for it wait until some website attaches it again (or the limit passes, then 404);
- a domain under a write hold makes POST, PUT, PATCH and DELETE requests wait until the hold is
  released (or the limit passes, then 503), while reads go on. A waiting write whose client has
  gone stops waiting and is never sent on: nobody would see its answer, and a write the rider
  believes failed must not be stored behind their back.

Waiters re-resolve the domain when they wake, so they go to wherever it points by then.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from deploy.host.panel_store import Mount, SiteRoute

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass(frozen=True)
class Resolved:
    """Where one request goes: the app mounted at `mount.path`, called with `upstream_path`."""

    website: str
    mount: Mount
    upstream_path: str


class NotRouted(Exception):
    """The request cannot be routed; `status` is 404 (unknown domain) or 503 (writes held)."""

    def __init__(self, status: int, reason: str, website: str | None = None):
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.website = website


class ClientGone(Exception):
    """The client of a waiting request closed its connection."""


@dataclass
class _Hold:
    website: str
    until: float


class RoutingTable:
    def __init__(self, wait_limit: float = 30.0):
        self.wait_limit = wait_limit
        self._routes: dict[str, SiteRoute] = {}
        self._moving: dict[str, float] = {}
        self._holds: dict[str, _Hold] = {}
        self._changed = asyncio.Event()
        # Requests under way, so a promotion knows when the old app is idle and when the
        # writes that got in before a hold have finished.
        self._in_flight: dict[int, int] = {}
        self._writes_in_flight: dict[str, int] = {}
        # Requests waiting here for a hold or a move to end, per domain.
        self._waiting: dict[str, int] = {}
        self._idle = asyncio.Event()

    def replace(self, routes: dict[str, SiteRoute]) -> None:
        """Install the panel's new table; domains that disappeared start moving."""
        now = time.monotonic()
        for domain in self._routes.keys() - routes.keys():
            self._moving[domain] = now + self.wait_limit
        for domain in routes:
            self._moving.pop(domain, None)
        self._moving = {d: until for d, until in self._moving.items() if until > now}
        self._routes = routes
        self._wake()

    def hold(self, website: str, seconds: float) -> list[str]:
        domains = sorted(d for d, route in self._routes.items() if route.website == website)
        until = time.monotonic() + seconds
        for domain in domains:
            self._holds[domain] = _Hold(website, until)
        return domains

    def release(self, website: str) -> list[str]:
        domains = sorted(d for d, hold in self._holds.items() if hold.website == website)
        for domain in domains:
            del self._holds[domain]
        self._wake()
        return domains

    def held_domains(self) -> dict[str, str]:
        now = time.monotonic()
        return {d: hold.website for d, hold in self._holds.items() if hold.until > now}

    def started(self, port: int, host: str, method: str) -> None:
        self._in_flight[port] = self._in_flight.get(port, 0) + 1
        if method in WRITE_METHODS:
            self._writes_in_flight[host] = self._writes_in_flight.get(host, 0) + 1

    def finished(self, port: int, host: str, method: str) -> None:
        self._in_flight[port] -= 1
        if method in WRITE_METHODS:
            self._writes_in_flight[host] -= 1
        self._idle.set()
        self._idle = asyncio.Event()

    def in_flight(self, port: int) -> int:
        return self._in_flight.get(port, 0)

    def writes_in_flight(self, domains) -> int:
        return sum(self._writes_in_flight.get(d, 0) for d in domains)

    def waiting(self, domains) -> int:
        return sum(self._waiting.get(d, 0) for d in domains)

    def domains_of(self, website: str) -> list[str]:
        return sorted(d for d, route in self._routes.items() if route.website == website)

    async def until(self, done, timeout: float) -> bool:
        """Wait until done() is true (checked whenever a request finishes); False on timeout."""
        deadline = time.monotonic() + timeout
        while not done():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            try:
                await asyncio.wait_for(self._idle.wait(), remaining)
            except TimeoutError:
                pass
        return True

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def lookup(self, host: str) -> SiteRoute | None:
        return self._routes.get(host)

    async def resolve(
        self,
        host: str,
        method: str,
        raw_path: str,
        client_gone: Callable[[], asyncio.Event] | None = None,
    ) -> Resolved:
        """Route a request, waiting while its domain moves or its writes are held; ClientGone
        if `client_gone()` (asked only when it waits) is set meanwhile."""
        deadline = None
        gone = None
        while True:
            now = time.monotonic()
            route = self._routes.get(host)
            wait_reason = None
            if route is None:
                moving = f"domain {host} is moving and was not attached in time"
                if self._moving.get(host, 0) > now:
                    wait_reason = (404, moving)
                elif deadline is not None:  # it waited here for the domain, in vain
                    raise NotRouted(404, moving)
                else:
                    raise NotRouted(404, f"no website serves {host}")
            elif method in WRITE_METHODS and host in self._holds:
                hold = self._holds[host]
                if hold.until > now:
                    wait_reason = (503, f"writes to {host} are held", hold.website)
                else:
                    # A hold that outlived its time lapses, so a crashed promotion cannot
                    # freeze a site for good.
                    del self._holds[host]
            if wait_reason is None:
                return _resolve_path(route, raw_path, host)
            if deadline is None:
                deadline = now + self.wait_limit
            if now >= deadline:
                raise NotRouted(*wait_reason)
            timeout = deadline - now
            if route is not None:
                timeout = min(timeout, self._holds[host].until - now)
            if client_gone is not None and gone is None:
                gone = client_gone()
            if gone is not None and gone.is_set():
                raise ClientGone(host)
            events = (self._changed,) if gone is None else (self._changed, gone)
            self._waiting[host] = self._waiting.get(host, 0) + 1
            try:
                await _any_of(events, timeout)
            finally:
                self._waiting[host] -= 1


async def _any_of(events, timeout: float) -> None:
    """Wait until one of the events is set, or the timeout passes."""
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


def _resolve_path(route: SiteRoute, raw_path: str, host: str) -> Resolved:
    path, question, query = raw_path.partition("?")
    for mount in route.mounts:
        if mount.path == "/":
            return Resolved(route.website, mount, raw_path)
        if path == mount.path or path.startswith(mount.path + "/"):
            # Like Webfaction, an app mounted below / sees paths relative to its mount.
            rest = path[len(mount.path) :] or "/"
            return Resolved(route.website, mount, rest + question + query)
    raise NotRouted(
        404, f"no app of website {route.website} serves {path} on {host}", route.website
    )
