"""The two waits a promotion relies on: a write hold answers only once the writes already under
way have finished, and wait_app_idle only once no request to the app is under way. Requests are
kept at the app behind a gate (a file the test creates), so nothing depends on how fast the
machine is."""

import threading

import pytest
import requests

from tests.conftest import wait_until
from tests.host.test_router import get, wait_for_text


def in_thread(function):
    finished = {}

    def run():
        finished["answer"] = function()

    thread = threading.Thread(target=run)
    thread.start()
    return thread, finished


@pytest.fixture
def site(shared_host, shared_api, names, start_app):
    """The test's own website, on its own domain, served by a running sample app."""
    app = shared_api.create_app(names("randopony2026r1"))
    start_app("r1", app.port)
    shared_api.create_website(
        names("randopony"), shared_api.list_ips()[0], False, [names.domain()], [(app.name, "/")]
    )
    return app


def answered_by_app(site):
    return requests.get(f"http://127.0.0.1:{site.port}/posts", timeout=5).json()


def test_hold_writes_waits_for_the_write_under_way(shared_host, shared_api, names, site, tmp_path):
    host, api, website, domain = shared_host, shared_api, names("randopony"), names.domain()
    gate = tmp_path / "gate-post"
    url = host.router_url.rstrip("/") + f"/submit?id=slow-1&gate={gate}"
    headers = {"Host": f"{domain}:{host.router_port}"}
    thread, post = in_thread(lambda: requests.post(url, headers=headers, data=b"x", timeout=60))
    wait_for_text(tmp_path / f"app-r1-{site.port}.log", f"at gate {gate}", timeout=60)

    holding_api = host.api()  # a client of its own: an XML-RPC proxy is one call at a time

    def hold():
        domains = holding_api.hold_writes(website, 60)
        # What the app had answered when the hold came back: the write under way, always.
        return domains, answered_by_app(site)

    holder, held = in_thread(hold)
    wait_for_text(host.log, f"holding writes to {website} ", timeout=60)
    # The hold is in force (a new write waits at the router), and it has not answered.
    late = threading.Thread(
        target=lambda: requests.post(
            host.router_url.rstrip("/") + "/submit?id=late", headers=headers, data=b"y", timeout=60
        )
    )
    late.start()
    wait_until(lambda: api.held_requests(website) == 1, "the late write to be held")
    assert "answer" not in held
    gate.touch()
    holder.join(60)
    thread.join(60)
    assert held["answer"] == ([domain], {"slow-1": 1})
    assert post["answer"].status_code == 200
    api.release_writes(website)
    late.join(60)
    assert answered_by_app(site) == {"slow-1": 1, "late": 1}


def test_wait_app_idle_waits_for_requests_under_way(shared_host, shared_api, names, site, tmp_path):
    host, api = shared_host, shared_api
    gate = tmp_path / "gate-get"
    thread, slow = in_thread(
        lambda: get(host, f"/gated?id=slow-get&gate={gate}", domain=names.domain())
    )
    wait_for_text(tmp_path / f"app-r1-{site.port}.log", f"at gate {gate}", timeout=60)
    waiting_api = host.api()  # a client of its own: an XML-RPC proxy is one call at a time
    waiter, idle = in_thread(
        lambda: (waiting_api.wait_app_idle(site.name, 60), answered_by_app(site))
    )
    assert api.wait_app_idle(site.name, 0.3) == 1  # the GET is still under way
    assert "answer" not in idle
    gate.touch()
    waiter.join(60)
    thread.join(60)
    assert slow["answer"].status_code == 200
    # It came back only once the app had answered the GET.
    assert idle["answer"] == (0, {"slow-get": 1})


def test_wait_app_idle_gives_up_and_says_how_many_are_left(
    shared_host, shared_api, names, site, tmp_path
):
    gate = tmp_path / "gate-idle"
    thread, _ = in_thread(lambda: get(shared_host, f"/gated?gate={gate}", domain=names.domain()))
    wait_for_text(tmp_path / f"app-r1-{site.port}.log", f"at gate {gate}", timeout=60)
    assert shared_api.wait_app_idle(site.name, 0.3) == 1
    gate.touch()
    thread.join(60)
