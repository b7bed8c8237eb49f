"""The two waits a promotion relies on: a write hold answers only once the writes already under
way have finished, and wait_app_idle only once no request to the app is under way."""

import threading
import time

import requests

from tests.host.test_router import DOMAIN, get, site  # noqa: F401


def in_thread(function):
    finished = {}

    def run():
        finished["answer"] = function()
        finished["at"] = time.monotonic()

    thread = threading.Thread(target=run)
    thread.start()
    return thread, finished


def test_hold_writes_waits_for_the_write_under_way(host, api, site):  # noqa: F811
    url = host.router_url.rstrip("/") + "/submit?id=slow-1&seconds=1.5"
    headers = {"Host": f"{DOMAIN}:{host.router_port}"}
    thread, post = in_thread(lambda: requests.post(url, headers=headers, data=b"x", timeout=20))
    time.sleep(0.4)  # the POST is now at the app, for about 1.1 s more
    asked_at = time.monotonic()
    assert api.hold_writes("randopony", 30) == [DOMAIN]
    held_at = time.monotonic()
    thread.join()
    assert post["answer"].status_code == 200
    assert held_at - asked_at > 0.8  # the hold waited for the write under way...
    # ...until the router had answered it (the client may hear of it a moment after the hold)
    assert post["at"] <= held_at + 0.2
    api.release_writes("randopony")


def test_wait_app_idle_waits_for_requests_under_way(host, api, site):  # noqa: F811
    thread, slow = in_thread(lambda: get(host, "/slow?seconds=1.5"))
    time.sleep(0.4)  # the GET is now at the app, for about 1.1 s more
    asked_at = time.monotonic()
    assert api.wait_app_idle(site.name, 10) == 0
    idle_at = time.monotonic()
    thread.join()
    assert slow["answer"].status_code == 200
    assert idle_at - asked_at > 0.8  # it waited for the request under way...
    # ...until the router had answered it (the client may hear of it a moment after)
    assert slow["at"] <= idle_at + 0.2


def test_wait_app_idle_gives_up_and_says_how_many_are_left(host, api, site):  # noqa: F811
    thread, _ = in_thread(lambda: get(host, "/slow?seconds=2"))
    time.sleep(0.4)
    assert api.wait_app_idle(site.name, 0.3) == 1
    thread.join()
