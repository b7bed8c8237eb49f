"""The front-end web server: routes each request by its Host header to the app's port.

Large bodies are streamed both ways; a form's body and the answer to a read are read whole first
(up to a size), so that a request an app process dropped can be sent again (see _send).
Connections to the apps are pooled and kept alive, and each website gets an access log with
status and duration.

Slow clients are cut off: a request head must arrive within the header timeout, a body within
the body timeout (408), and one address may hold only so many connections at once (503). A form
is read whole before it is routed, so a client dribbling its body never counts as a write in
flight and cannot keep a promotion's write hold from answering.
"""

from __future__ import annotations

import asyncio
import html
import ipaddress
import itertools
import logging
import math
import re
import time
import uuid
from collections import Counter
from pathlib import Path

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from deploy.host.routing_table import ClientGone, NotRouted, RoutingTable

log = logging.getLogger("deploy.host.router")

# RFC 9110 7.6.1: meaningful for one connection only, never forwarded.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "expect",
    }
)
# Proxy headers only the router may set: a client's own would tell an app where a request came
# from or how (a prefix for its links, https for its cookies) as the client pleases.
CLIENT_PROXY_HEADERS = frozenset(
    {
        "forwarded",
        "x-forwarded-prefix",
        "x-forwarded-port",
        "x-forwarded-by",
        "x-forwarded-server",
        "x-forwarded-scheme",
        "x-forwarded-ssl",
        "x-scheme",
        "x-real-ip",
    }
)
PROTO = re.compile(r"https?")
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS"})
# The request's id, and the answer header of an app that handles a write sent twice once.
REQUEST_ID = "X-Randopony-Request"
REPLAY_HEADER = "X-Randopony-Replay"
REPLAY_LOWER = REPLAY_HEADER.lower()
# The largest request body passed on (--max-body): forms are a few kB.
MAX_BODY = 64 * 1024
# Bodies up to this size (forms) are read before they are sent, so they can be sent again.
REPLAYABLE_BODY = 64 * 1024
# Between tries of a request the app did not take: doubling from the first to the last.
RETRY_PAUSE, MAX_RETRY_PAUSE = 0.02, 0.5
# Answers to reads are read whole up to this size (event pages of thousands of riders fit), and
# a read whose answer was cut off is sent again, up to BODY_TRIES in all.
BUFFERED_BODY = 4 * 1024 * 1024
BODY_TRIES = 3
# Read whole upstream bodies up to this size: one write instead of a streaming loop.
SMALL_BODY = 64 * 1024
UNKNOWN_DOMAINS_LOG = "_unknown_domains"
HEADER_TIMEOUT = 10.0
BODY_TIMEOUT = 30.0
MAX_CLIENT_CONNECTIONS = 64
# nginx's name for a request whose client closed the connection before it was answered.
CLIENT_GONE = 499
# Set on a request whose body came too slowly, however the failure then surfaces.
BODY_LATE = "body_late"
_TOO_MANY = b"Too many connections from your address; try again in a moment.\n"
TOO_MANY_CONNECTIONS = (
    b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 5\r\nContent-Type: text/plain\r\n"
    b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(_TOO_MANY), _TOO_MANY)
)


class AccessLogs:
    """One append-only file per website, kept open and flushed about once a second."""

    def __init__(self, folder: Path):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self._files = {}
        self._dirty = False

    def write(self, website: str, line: str) -> None:
        handle = self._files.get(website)
        if handle is None:
            handle = open(self.folder / f"{website}.access.log", "a", buffering=65536)
            self._files[website] = handle
        handle.write(line)
        self._dirty = True

    def flush(self) -> None:
        if self._dirty:
            for handle in self._files.values():
                handle.flush()
            self._dirty = False

    async def flush_forever(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            self.flush()

    def close(self) -> None:
        self.flush()
        for handle in self._files.values():
            handle.close()
        self._files.clear()


class Router:
    def __init__(
        self,
        table: RoutingTable,
        logs_dir: Path,
        connect_timeout: float = 5.0,
        retry_window: float = 10.0,
        max_body: int = MAX_BODY,
        header_timeout: float = HEADER_TIMEOUT,
        body_timeout: float = BODY_TIMEOUT,
        max_client_connections: int = MAX_CLIENT_CONNECTIONS,
        trusted_front_ends: frozenset[ipaddress.IPv4Address | ipaddress.IPv6Address] = frozenset(),
    ):
        self.table = table
        self.access = AccessLogs(logs_dir)
        self.connect_timeout = connect_timeout
        self.retry_window = retry_window
        self.max_body = max_body
        self.header_timeout = header_timeout
        self.body_timeout = body_timeout
        self.max_client_connections = max_client_connections
        self.trusted_front_ends = trusted_front_ends
        self.server: RouterServer | None = None
        self.retried = 0
        self.down_since: dict[int, float] = {}
        # Ports whose app last said it does a write sent twice once.
        self.replay_safe: dict[int, bool] = {}
        self.client: aiohttp.ClientSession | None = None
        self._flusher: asyncio.Task | None = None
        self._stamp_second = 0
        self._stamp = ""

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(limit=512, keepalive_timeout=30, use_dns_cache=False)
        self.client = aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,
            # Pass the browser's headers as they are: no defaults of our own.
            skip_auto_headers=("Accept", "Accept-Encoding", "User-Agent", "Content-Type"),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.connect_timeout),
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        self._flusher = asyncio.create_task(self.access.flush_forever())

    def make_server(self) -> RouterServer:
        # aiohttp's keep-alive timer runs from a connection's opening (or its last answer) until
        # a whole request head has been parsed, and bytes arriving do not restart it: it is a
        # total header timeout, which a client dribbling its head one byte at a time cannot
        # stretch. Idle kept-alive connections close after as long, which browsers expect.
        self.server = RouterServer(
            self.handle,
            max_per_client=self.max_client_connections,
            keepalive_timeout=self.header_timeout,
            access_log=None,
        )
        return self.server

    async def stop(self) -> None:
        if self._flusher:
            self._flusher.cancel()
        if self.client:
            await self.client.close()
        self.access.close()

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        started = time.monotonic()
        website = None
        status = 0
        checked = checked_host(request.headers.get("Host", ""))
        request["host"] = checked[1] if checked else "-"
        try:
            if checked is None:
                status = 400
                return _page(400, "The Host of the request is not name[:port].")
            host = checked[0]
            length = request.content_length
            if length is not None and length > self.max_body:
                status = 413
                return _page(413, f"The request is larger than {self.max_body} bytes.")
            data = await self._body(request)
            try:
                target = await self.table.resolve(
                    host, request.method, request.raw_path, self._gone_event(request)
                )
            except NotRouted as refused:
                website = refused.website
                status = refused.status
                log.info("%s %s %s: %s", status, request.method, request["host"], refused.reason)
                return _page(refused.status, refused.reason)
            except ClientGone:
                status = CLIENT_GONE
                log.info(
                    "dropped %s %s%s: its client left while it waited",
                    request.method,
                    request["host"],
                    request.raw_path,
                )
                return web.Response(status=CLIENT_GONE)
            website = target.website
            # Counted in the same step as resolve's hold check, with no await between: a write
            # that got past the check is in flight before any hold can answer.
            self.table.started(target.mount.port, host, request.method)
            try:
                response = await self._forward(request, target, data)
            finally:
                self.table.finished(target.mount.port, host, request.method)
            status = response.status
            return response
        except _TooLarge:
            status = 413
            return _page(413, f"The request is larger than {self.max_body} bytes.")
        except _TooSlow:
            status = 408
            return self._too_slow(request)
        except ConnectionError:
            # The client left while it sent its body: nobody to answer.
            status = CLIENT_GONE
            return web.Response(status=CLIENT_GONE)
        except _AppDown as down:
            if request.get(BODY_LATE):  # the app saw the body end early because it was late
                status = 408
                return self._too_slow(request)
            status = 502
            log.warning(
                "502 %s %s%s: app %s on port %s does not answer (%s)",
                request.method,
                request["host"],
                request.raw_path,
                down.app,
                down.port,
                down.error,
            )
            return _page(
                502,
                f"The site {website} is down: its app {down.app} does not answer. "
                "Try again in a moment.",
            )
        except Exception:
            if not request.get(BODY_LATE):
                raise
            status = 408
            return self._too_slow(request)
        finally:
            self._log_access(request, website, status, time.monotonic() - started)

    def _too_slow(self, request) -> web.Response:
        log.info(
            "408 %s %s%s: its body did not arrive within %s s",
            request.method,
            request["host"],
            request.raw_path,
            self.body_timeout,
        )
        response = _page(408, f"The request's body did not arrive within {self.body_timeout} s.")
        response.force_close()  # the rest of its body may still be on the way
        return response

    def _gone_event(self, request):
        if self.server is None:
            return None
        return lambda: self.server.gone(request.protocol)

    async def _body(self, request):
        """The body to pass on: a form (small, kept so it can be sent again) or a body of
        unknown length read whole, counted as it comes so it cannot pass the limit; a larger
        one of known length (within the limit) streamed as it comes. Either must arrive within
        the body timeout, counted from its first byte awaited: a total, not an idle, timeout,
        since a client sending a byte a second never goes idle."""
        if not request.body_exists:
            return None
        length = request.content_length
        if length is None or length <= REPLAYABLE_BODY:
            try:
                async with asyncio.timeout(self.body_timeout):
                    return await self._read_body(request)
            except TimeoutError:
                request[BODY_LATE] = True
                raise _TooSlow() from None
        return self._stream_body(request)

    async def _stream_body(self, request):
        deadline = asyncio.get_running_loop().time() + self.body_timeout
        try:
            while True:
                async with asyncio.timeout_at(deadline):
                    chunk = await request.content.readany()
                if not chunk:
                    return
                yield chunk
        except TimeoutError:
            request[BODY_LATE] = True
            raise _TooSlow() from None

    async def _forward(self, request: web.BaseRequest, target, data) -> web.StreamResponse:
        headers = request.headers.copy()
        for name in HOP_BY_HOP | CLIENT_PROXY_HEADERS | connection_tokens(request.headers):
            headers.popall(name, None)
        peer = request.remote or ""
        previous = request.headers.get("X-Forwarded-For")
        headers["X-Forwarded-For"] = f"{previous}, {peer}" if previous else peer
        headers["X-Forwarded-Proto"] = self._scheme(request)
        # Only the Host the router checked and routed on: an app that builds a link from it
        # can never be pointed elsewhere ("randopony.localhost:1, evil.example" is refused).
        headers["Host"] = headers["X-Forwarded-Host"] = request["host"]
        if target.mount.path != "/":
            headers["X-Forwarded-Prefix"] = target.mount.path
        url = URL(f"http://127.0.0.1:{target.mount.port}{target.upstream_path}", encoded=True)
        # Every request gets an id of the router's own; its tries share it, so an app that keeps
        # the ids of the writes it handled does a write sent twice once (app/request_replay.py).
        headers[REQUEST_ID] = uuid.uuid4().hex
        idempotent = data is None and request.method in IDEMPOTENT
        # A page a reader asked for is read whole before the browser gets a byte of it, up to
        # a size, so that an app process dying half-way through it costs only a second try.
        whole = BUFFERED_BODY if idempotent else SMALL_BODY
        for attempt in range(BODY_TRIES):
            upstream = await self._send(request, target, url, headers, data)
            try:
                self.replay_safe[target.mount.port] = upstream.headers.get(REPLAY_HEADER) == "ids"
                dropped = HOP_BY_HOP | connection_tokens(upstream.headers) | {REPLAY_LOWER}
                response_headers = CIMultiDict(
                    (name, value)
                    for name, value in upstream.headers.items()
                    if name.lower() not in dropped
                )
                length = upstream.content_length
                if length is not None and length <= whole:
                    try:
                        body = await upstream.read()
                    except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError) as error:
                        if idempotent and attempt + 1 < BODY_TRIES:
                            self.retried += 1
                            continue
                        raise _AppDown(target.mount.app, target.mount.port, error) from None
                    return web.Response(
                        status=upstream.status,
                        reason=upstream.reason,
                        headers=response_headers,
                        body=body,
                    )
                response = web.StreamResponse(
                    status=upstream.status, reason=upstream.reason, headers=response_headers
                )
                await response.prepare(request)
                async for chunk in upstream.content.iter_chunked(SMALL_BODY):
                    await response.write(chunk)
                await response.write_eof()
                return response
            finally:
                upstream.release()
        raise AssertionError("unreachable: the last try returns or raises")

    def _scheme(self, request) -> str:
        """The scheme the browser used: a trusted front end's (one that ends https before the
        router) when it says, else the router's own; never what a client claims."""
        if self.trusted_front_ends and request.remote:
            try:
                peer = ipaddress.ip_address(request.remote)
            except ValueError:
                return request.scheme
            said = request.headers.get("X-Forwarded-Proto", "")
            if peer in self.trusted_front_ends and PROTO.fullmatch(said):
                return said
        return request.scheme

    async def _read_body(self, request) -> bytes:
        body = bytearray()
        while chunk := await request.content.readany():
            body += chunk
            if len(body) > self.max_body:
                raise _TooLarge()
        return bytes(body)

    async def _send(self, request, target, url, headers, data):
        """Send the request to the app, again while that is safe, until the app answers or the
        retry window closes. A refused connection never reached the app, so any request may go
        again (its body is still unread). A connection that drops before any answer (the process
        died, or a pooled connection was closed) is sent again only for a request without a body
        that cannot change anything. Another process on the app's socket, or the restarted one,
        takes it; the window covers a restart by supervisord."""
        idempotent = data is None and request.method in IDEMPOTENT
        loop = asyncio.get_running_loop()
        port = target.mount.port
        # A write the app may have stored goes again only to an app that does it once.
        replayable = isinstance(data, bytes) and self.replay_safe.get(port, False)
        # An app that has refused for a whole window is down, not restarting: answer at once.
        deadline = min(loop.time(), self.down_since.get(port, math.inf)) + self.retry_window
        for attempt in itertools.count():
            try:
                upstream = await self.client.request(
                    request.method,
                    url,
                    headers=headers,
                    data=data,
                    allow_redirects=False,
                    compress=None,
                    chunked=None,
                )
                self.down_since.pop(port, None)
                return upstream
            except aiohttp.ClientConnectorError as error:
                self.down_since.setdefault(port, loop.time())
                failure = error
            except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as error:
                if not (idempotent or replayable):
                    raise _AppDown(target.mount.app, target.mount.port, error) from None
                failure = error
            if request.transport is None or request.transport.is_closing():
                # The client has gone: nobody to answer.
                raise _AppDown(target.mount.app, target.mount.port, failure)
            pause = min(RETRY_PAUSE * 2**attempt, MAX_RETRY_PAUSE)
            if loop.time() + pause > deadline:
                raise _AppDown(target.mount.app, target.mount.port, failure)
            self.retried += 1
            if attempt == 0:
                log.info(
                    "retrying %s %s%s: app %s on port %s: %s",
                    request.method,
                    request["host"],
                    request.raw_path,
                    target.mount.app,
                    target.mount.port,
                    failure,
                )
            await asyncio.sleep(pause)

    def _log_access(self, request, website: str | None, status: int, seconds: float) -> None:
        now = int(time.time())
        if now != self._stamp_second:
            # Formatting the time once a second, not once a request, is cheaper on a busy router.
            self._stamp_second = now
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(now))
        line = (
            f"{self._stamp} {request.remote} {request['host']} "
            f'"{request.method} {request.raw_path} HTTP/{request.version.major}.'
            f'{request.version.minor}" {status} {seconds:.4f}\n'
        )
        self.access.write(website or UNKNOWN_DOMAINS_LOG, line)


class RouterServer(web.Server):
    """aiohttp's low-level server, with a cap on each address's open connections, and an event
    per connection set when it closes (aiohttp does not cancel a handler whose client left)."""

    def __init__(self, handler, *, max_per_client: int, **kwargs):
        super().__init__(handler, **kwargs)
        self.max_per_client = max_per_client
        self._address: dict[object, str] = {}
        self._open: Counter[str] = Counter()
        self._gone: dict[object, asyncio.Event] = {}

    def connection_made(self, handler, transport) -> None:
        super().connection_made(handler, transport)
        peer = transport.get_extra_info("peername")
        address = peer[0] if isinstance(peer, tuple) else "-"
        self._address[handler] = address
        self._open[address] += 1
        if self._open[address] > self.max_per_client:
            if self._open[address] == self.max_per_client + 1:  # once per crossing, not a flood
                log.warning(
                    "%s has %s connections open; refusing more", address, self.max_per_client
                )
            # Refused before any request is read, so a flood of them costs no more than this.
            transport.write(TOO_MANY_CONNECTIONS)
            handler.force_close()

    def connection_lost(self, handler, exc=None) -> None:
        super().connection_lost(handler, exc)
        address = self._address.pop(handler, None)
        if address is not None:
            self._open[address] -= 1
            if not self._open[address]:
                del self._open[address]
        gone = self._gone.pop(handler, None)
        if gone is not None:
            gone.set()

    def gone(self, handler) -> asyncio.Event:
        """An event set when the handler's connection has closed (already, or later)."""
        event = self._gone.get(handler)
        if event is None:
            event = asyncio.Event()
            if handler in self._address:
                self._gone[handler] = event
            else:
                event.set()
        return event


class _TooLarge(Exception):
    pass


class _TooSlow(Exception):
    pass


class _AppDown(Exception):
    def __init__(self, app: str, port: int, error: Exception):
        super().__init__(app)
        self.app = app
        self.port = port
        self.error = error


def connection_tokens(headers) -> frozenset[str]:
    """The headers a message names in its Connection header: meant for this one connection
    (RFC 9110 7.6.1), so never passed on."""
    return frozenset(
        token.strip().lower()
        for value in headers.getall("Connection", ())
        for token in value.split(",")
        if token.strip()
    )


LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
HOST = re.compile(
    rf"(?P<name>(?:{LABEL}\.)*{LABEL}\.?|\[[0-9a-f:.]{{2,45}}\])(?::(?P<port>[0-9]{{1,5}}))?",
    re.IGNORECASE,
)


def checked_host(value: str) -> tuple[str, str] | None:
    """(the domain to route on, the Host to pass on) for a Host of the form name[:port];
    None for anything else."""
    found = HOST.fullmatch(value)
    if found is None or len(found["name"]) > 255:
        return None
    name = found["name"].lower()
    port = f":{found['port']}" if found["port"] else ""
    return name.removesuffix("."), name + port


TITLES = {
    400: "Bad Request",
    404: "Not Found",
    408: "Request Timeout",
    413: "Content Too Large",
    502: "Bad Gateway",
    503: "Service Unavailable",
}


def _page(status: int, message: str) -> web.Response:
    title = TITLES.get(status, "Error")
    body = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{status} {title}</title></head>\n<body><h1>{status} {title}</h1>\n"
        f"<p>{html.escape(message)}</p>\n<p><small>RandoPony host router</small></p>\n"
        "</body></html>\n"
    )
    headers = {"Retry-After": "5"} if status in (502, 503) else None
    return web.Response(status=status, text=body, content_type="text/html", headers=headers)
