"""Logins: wrong passwords are refused and rate limited, sessions expire, passwords stay secret."""

import time

import pytest

from deploy.hosting_api import (
    HostingAPI,
    LoginFailed,
    PanelUnreachable,
    RateLimited,
    SessionInvalid,
)
from tests.host.conftest import PASSWORD, USERNAME, free_port, make_host, set_password


@pytest.fixture
def strict_host(tmp_path):
    host = make_host(tmp_path / "host", "--max-login-failures", "3", "--session-ttl", "1")
    host.start()
    yield host
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
