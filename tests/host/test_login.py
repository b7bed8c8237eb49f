"""Logins: wrong passwords are refused and rate limited, sessions expire, passwords stay secret."""

import threading
import time
import xmlrpc.client

import pytest

from deploy.host.panel import LoginThrottle
from deploy.host.panel_store import PanelError
from deploy.remote.panel_client import (
    FaultCode,
    HostingAPI,
    InvalidInput,
    LoginFailed,
    PanelUnreachable,
    RateLimited,
    SessionInvalid,
)
from tests.host.conftest import PASSWORD, USERNAME, free_port, make_host, set_password


@pytest.fixture
def strict_host(tmp_path):
    # A host of its own: its arguments, and the failures it counts block all logins from here.
    # Blocks of 10 minutes: however slow the machine, none lapses before the next try.
    host = make_host(
        tmp_path / "host",
        "--max-login-failures",
        "3",
        "--first-login-wait",
        "600",
        "--session-ttl",
        "1",
    )
    try:
        host.start()
        yield host
    finally:
        host.stop()


def test_wrong_passwords_are_refused_then_rate_limited(strict_host):
    attempts = [("nobody", PASSWORD), (USERNAME, "guess one"), (USERNAME, "guess two")]
    for username, wrong in attempts:
        with pytest.raises(LoginFailed, match="login failed: wrong username or password"):
            HostingAPI(strict_host.panel_url).login(username, wrong)
    # Three failures from this client: even the right password is refused for a while now.
    with pytest.raises(RateLimited, match="too many failed logins; try again in"):
        HostingAPI(strict_host.panel_url).login(USERNAME, PASSWORD)
    log = strict_host.log.read_text()
    for secret in ("guess one", "guess two", PASSWORD):
        assert secret not in log
    assert "failed login for 'pony'" in log
    stored = (strict_host.root / "panel" / "panel.sqlite").read_bytes()
    assert PASSWORD.encode() not in stored
    assert b"$argon2id$" in stored


def test_sessions_expire(strict_host):
    api = strict_host.api()
    session = api.session_id
    api.list_apps()
    # Each use renews a session for one second; left unused for twice that, it has ended
    # (the wait only has to be long enough, never short enough).
    time.sleep(2)
    with pytest.raises(SessionInvalid, match="unknown or expired session; log in again"):
        HostingAPI(strict_host.panel_url)._call("list_apps", session)


def test_set_password_refuses_bad_input(tmp_path):
    refused = set_password(tmp_path, "Not A Name", "long enough password")
    assert refused.returncode == 1
    assert "invalid username" in refused.stderr
    refused = set_password(tmp_path, "pony", "short")
    assert refused.returncode == 1
    assert "at least 8 characters" in refused.stderr


def test_unreachable_panel_is_its_own_error():
    with pytest.raises(PanelUnreachable, match="no hosting panel answers"):
        HostingAPI(f"http://127.0.0.1:{free_port()}/", timeout=2).login(USERNAME, PASSWORD)


# A host of its own: the guesses block all logins from here. The block must outlast the 20
# guesses' arrival, however slow the machine.
@pytest.mark.host_args("--first-login-wait", "600")
def test_parallel_wrong_logins_are_counted_before_any_is_verified(host):
    # The limit (5 by default) is checked and the attempt counted before the awaited password
    # check: of 20 guesses sent at once, 5 are verified and the other 15 refused unverified.
    start = threading.Barrier(20)
    faults = []

    def guess(number):
        proxy = xmlrpc.client.ServerProxy(host.panel_url)
        start.wait()
        try:
            proxy.login(USERNAME, f"wrong guess {number}")
        except xmlrpc.client.Fault as fault:
            faults.append(fault)

    threads = [threading.Thread(target=guess, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    codes = sorted(fault.faultCode for fault in faults)
    assert codes == [FaultCode.LOGIN_FAILED] * 5 + [FaultCode.RATE_LIMITED] * 15
    assert host.log.read_text().count("failed login for 'pony'") == 5
    refused = [f.faultString for f in faults if f.faultCode == FaultCode.RATE_LIMITED]
    assert all(text.startswith("too many failed logins; try again in ") for text in refused)


def test_an_overlong_password_is_refused_before_hashing(shared_host):
    logged = len(shared_host.log.read_bytes())
    with pytest.raises(InvalidInput, match="a password at most 1024"):
        HostingAPI(shared_host.panel_url).login(USERNAME, "x" * 1025)
    with pytest.raises(InvalidInput, match="a username has at most 256 characters"):
        HostingAPI(shared_host.panel_url).login("u" * 257, PASSWORD)
    assert b"failed login" not in shared_host.log.read_bytes()[logged:]
    shared_host.api()  # and they counted as no attempt


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def refused_for(throttle, *keys) -> int:
    with pytest.raises(PanelError) as refused:
        throttle.take(*keys)
    assert refused.value.code == FaultCode.RATE_LIMITED
    return int(refused.value.message.removeprefix("too many failed logins; try again in ")[:-2])


def test_each_failure_past_the_limit_doubles_the_wait_up_to_a_cap():
    clock = Clock()
    throttle = LoginThrottle(max_failures=3, first_wait=10, longest_wait=60, clock=clock)
    keys = ("user:pony", "client:203.0.113.9")
    for _ in range(3):
        throttle.take(*keys)  # free attempts (each a failure until it succeeds)
    waits = []
    for _ in range(5):
        waits.append(refused_for(throttle, *keys))
        clock.now += waits[-1]
        throttle.take(*keys)  # allowed once the wait is over, and counted again
    assert waits == [10, 20, 40, 60, 60]
    # A refused attempt does not lengthen the wait: only guesses that were checked do.
    clock.now += 1
    assert refused_for(throttle, *keys) == 59
    assert refused_for(throttle, *keys) == 59


def test_a_success_clears_the_username_but_not_the_client():
    clock = Clock()
    throttle = LoginThrottle(max_failures=2, first_wait=10, clock=clock)
    for _ in range(2):
        throttle.take("user:pony", "client:a")
    # Both keys wait now, whatever the other key of an attempt.
    assert refused_for(throttle, "user:pony", "client:b") == 10
    assert refused_for(throttle, "user:other", "client:a") == 10
    clock.now += 10
    throttle.take("user:pony", "client:b")
    throttle.succeeded("user:pony", "client:b")
    # The username starts clean: two free attempts again.
    throttle.take("user:pony", "client:c")
    throttle.take("user:pony", "client:d")
    assert refused_for(throttle, "user:pony", "client:e") == 10
    # Client a's failures still count: its next failure costs twice the wait.
    throttle.take("user:other", "client:a")
    assert refused_for(throttle, "user:third", "client:a") == 20
