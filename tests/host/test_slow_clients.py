"""Slow and greedy clients, on real sockets: a head or a body dribbled a byte at a time, too many
connections from one address, a held write whose client leaves, and a hold that outlasts the
router's wait limit. Nothing here is timed: each test waits for the outcome itself (a closed
connection, a status, a log line), with a generous deadline that only ends a wait that would
never end."""

import select
import socket
import threading

import pytest
import requests

from deploy.host import server
from tests.host.test_router import DOMAIN, get, site, wait_for_text, wait_until  # noqa: F401

# One byte per DRIBBLE seconds, for at most this many bytes: a deadline, not a measurement.
DRIBBLE, MOST_BYTES = 0.1, 1000


def connect(host) -> socket.socket:
    return socket.create_connection(("127.0.0.1", host.router_port), timeout=60)


def dribble_until_answered(sock: socket.socket, byte: bytes = b"a", most: int = MOST_BYTES):
    """Send one byte at a time until the router answers or closes; False if it never did."""
    for _ in range(most):
        readable, _, _ = select.select([sock], [], [], DRIBBLE)
        if readable:
            return True
        try:
            sock.sendall(byte)
        except OSError:  # closed under us
            return True
    return False


def read_all(sock: socket.socket) -> bytes:
    """Everything the router sends until it closes the connection."""
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return data


def read_answer(sock: socket.socket) -> tuple[int, dict, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"the connection closed before a whole answer: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    headers = {name.lower(): value for name, value in headers.items()}
    while len(body) < int(headers.get("content-length", 0)):
        chunk = sock.recv(65536)
        assert chunk, "the connection closed in the middle of an answer"
        body += chunk
    return int(lines[0].split()[1]), headers, body


def post_head(path: str, length: int) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: {DOMAIN}\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()


def answered_by_app(site):  # noqa: F811
    return requests.get(f"http://127.0.0.1:{site.port}/posts", timeout=5).json()


@pytest.mark.host_args("--header-timeout", "1")
def test_a_dribbled_request_head_is_cut_off(host, site):  # noqa: F811
    with connect(host) as slow:
        slow.sendall(f"GET / HTTP/1.1\r\nHost: {DOMAIN}\r\nX-Slow: ".encode())
        assert dribble_until_answered(slow), "the router kept waiting for a head dribbled to it"
        assert read_all(slow) == b""  # closed, no request was ever made
    assert get(host).status_code == 200  # everyone else is served as before


@pytest.mark.host_args("--body-timeout", "1")
def test_a_dribbled_body_gets_408_and_never_reaches_the_app(host, site):  # noqa: F811
    with connect(host) as slow:
        slow.sendall(post_head("/register?id=slow-body", 2000) + b"n")
        # 1,999 more bytes (minutes of dribbling) would complete the body: the router answers
        # long before that.
        assert dribble_until_answered(slow, most=1999), "the router waited for the whole body"
        status, headers, body = read_answer(slow)
    assert status == 408, body
    assert headers["connection"] == "close"
    assert b"did not arrive within 1.0 s" in body
    wait_for_text(host.log, "408 POST")
    assert "slow-body" not in answered_by_app(site)


@pytest.mark.host_args("--body-timeout", "120")
def test_a_slow_body_never_keeps_a_hold_from_answering(host, api, site):  # noqa: F811
    """The body of a write is read before the write is routed: a client that has sent only half
    of it is not a write in flight, so a promotion's hold answers at once; the write, once its
    body is whole, waits for the hold like any other."""
    with connect(host) as slow:
        slow.sendall(post_head("/register?id=half", 9) + b"name=")
        # A round trip on another connection, so the router has most likely seen the head.
        assert get(host).status_code == 200
        holding_api = host.api()  # a client of its own: an XML-RPC proxy is one call at a time
        held = {}
        holder = threading.Thread(
            target=lambda: held.update(domains=holding_api.hold_writes("randopony", 600)),
            daemon=True,
        )
        holder.start()
        wait_until(lambda: "domains" in held, "the hold to answer despite a half-sent body")
        holder.join(120)
        assert held["domains"] == [DOMAIN]

        slow.sendall(b"Alex")
        wait_until(lambda: api.held_requests("randopony") == 1, "the write to wait for the hold")
        assert "half" not in answered_by_app(site)
        assert api.release_writes("randopony") == [DOMAIN]
        status, _, body = read_answer(slow)
    assert status == 200, body
    assert answered_by_app(site)["half"] == 1


@pytest.mark.host_args("--max-client-connections", "2", "--header-timeout", "120")
def test_connections_over_the_cap_of_one_address_are_refused(host, site):  # noqa: F811
    first, second = connect(host), connect(host)
    try:
        with connect(host) as third:
            try:
                refused = read_all(third)
            except TimeoutError:
                pytest.fail("a connection over the cap was neither refused nor closed")
        assert refused.startswith(b"HTTP/1.1 503 Service Unavailable\r\n"), refused
        assert b"\r\nRetry-After: 5\r\n" in refused
        wait_for_text(host.log, "127.0.0.1 has 2 connections open; refusing more")
        first.close()

        def served() -> bool:
            try:
                return get(host).status_code == 200
            except requests.ConnectionError:
                return False

        wait_until(served, "a new connection to be served once one of the two closed")
    finally:
        first.close()
        second.close()


# A wait limit far beyond the test's own deadlines: only the client leaving ends the wait.
@pytest.mark.host_args("--wait-limit", "600")
def test_a_held_write_whose_client_left_is_dropped(host, api, site):  # noqa: F811
    assert api.hold_writes("randopony", 600) == [DOMAIN]
    with connect(host) as leaving:
        leaving.sendall(post_head("/register?id=gone", 6) + b"name=x")
        wait_until(lambda: api.held_requests("randopony") == 1, "the write to wait at the router")
    wait_until(
        lambda: api.held_requests("randopony") == 0,
        "the router to stop holding a write whose client left",
    )
    wait_for_text(host.log, "dropped POST randopony.localhost/register?id=gone")
    api.release_writes("randopony")
    after = requests.post(
        host.router_url + "/register?id=after", data=b"x", headers={"Host": DOMAIN}, timeout=60
    )
    assert after.status_code == 200
    assert answered_by_app(site) == {"after": 1}


@pytest.mark.host_args("--wait-limit", "1")
def test_a_write_held_past_the_wait_limit_gets_503_with_retry_after(host, api, site):  # noqa: F811
    assert api.hold_writes("randopony", 600) == [DOMAIN]
    answer = requests.post(
        host.router_url + "/register?id=late", data=b"x", headers={"Host": DOMAIN}, timeout=60
    )
    assert answer.status_code == 503
    assert answer.headers["Retry-After"] == "5"
    assert f"writes to {DOMAIN} are held" in answer.text
    assert answered_by_app(site) == {}


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--header-timeout", "0"),
        ("--header-timeout", "ten"),
        ("--body-timeout", "1e9"),
        ("--body-timeout", "-5"),
        ("--max-client-connections", "0"),
        ("--max-client-connections", "2.5"),
        ("--trusted-front-end", "proxy.example"),
        ("--trusted-front-end", "10.0.0.1/8"),
        ("--first-login-wait", "0"),
    ],
)
def test_bad_router_options_are_refused_clearly(monkeypatch, capsys, tmp_path, option, value):
    monkeypatch.setattr(server.uvloop, "run", lambda coroutine: pytest.fail("it would serve"))
    with pytest.raises(SystemExit) as refused:
        server.main(["serve", "--root", str(tmp_path), option, value])
    assert refused.value.code == 2
    error = capsys.readouterr().err
    assert f"argument {option}: expected" in error and repr(value) in error


@pytest.mark.host_args("--max-body", "1000000", "--body-timeout", "1")
def test_a_large_body_streamed_too_slowly_gets_408(host, site):  # noqa: F811
    """A body over the size read whole is passed on as it comes, within the same timeout."""
    with connect(host) as slow:
        slow.sendall(post_head("/digest", 200_000) + b"x" * 100_000)
        # Far from the 100,000 bytes that would complete the body.
        assert dribble_until_answered(slow), "the router waited for the rest of the body"
        status, headers, body = read_answer(slow)
    assert status == 408, body
    assert headers["connection"] == "close"
    wait_for_text(host.log, "408 POST")
