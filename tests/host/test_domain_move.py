"""Moving a domain between apps the Webfaction way (detach, then attach) fails no request."""

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import requests

from tests.conftest import wait_until
from tests.host.conftest import Names, make_host


class LoopingClients:
    """Threads looping GETs and POSTs to a domain through the router until stopped."""

    def __init__(self, host, domain: str, threads: int = 4):
        self.url = host.router_url
        self.headers = {"Host": domain}
        self.threads = threads
        self.stopping = threading.Event()
        self.failures: list[str] = []
        self.answered_by: dict[str, str] = {}
        self.gets = 0
        self.lock = threading.Lock()
        self.pool = ThreadPoolExecutor(threads)
        self.futures = []

    def __enter__(self):
        self.futures = [self.pool.submit(self._loop) for _ in range(self.threads)]
        return self

    def __exit__(self, *exc):
        self.stopping.set()
        for future in self.futures:
            future.result()
        self.pool.shutdown()

    def _loop(self):
        session = requests.Session()
        while not self.stopping.is_set():
            post_id = uuid.uuid4().hex
            for method in ("GET", "POST"):
                params = {"id": post_id} if method == "POST" else None
                try:
                    answer = session.request(
                        method,
                        self.url + "/register",
                        params=params,
                        data=b"rider=1" if method == "POST" else None,
                        headers=self.headers,
                        timeout=15,
                    )
                except requests.RequestException as error:
                    self._record(failure=f"{method}: {error}")
                    continue
                if answer.status_code != 200:
                    self._record(failure=f"{method}: {answer.status_code} {answer.text[:200]}")
                    continue
                with self.lock:
                    if method == "POST":
                        self.answered_by[post_id] = answer.json()["app"]
                    else:
                        self.gets += 1
        session.close()

    def _record(self, failure: str):
        with self.lock:
            self.failures.append(failure)


def post_counts(host, port: int) -> dict[str, int]:
    return requests.get(f"http://127.0.0.1:{port}/posts", timeout=5).json()


def setup_two_releases(api, names, start_app):
    """Two running releases, the first serving the test's domain; the second has none yet."""
    old, new = api.create_app(names("randopony2026r1")), api.create_app(names("randopony2026r2"))
    start_app("r1", old.port)
    start_app("r2", new.port)
    ip = api.list_ips()[0]
    api.create_website(names("production_r1"), ip, False, [names.domain()], [(old.name, "/")])
    api.create_website(names("production_r2"), ip, False, [], [(new.name, "/")])
    return old, new, ip


def check_every_post_answered_once(host, clients, old, new):
    assert clients.failures == []
    counts_old, counts_new = post_counts(host, old.port), post_counts(host, new.port)
    assert set(counts_old) & set(counts_new) == set()
    received = {**counts_old, **counts_new}
    assert set(received) == set(clients.answered_by)
    assert set(received.values()) == {1}
    for post_id, app in clients.answered_by.items():
        assert post_id in (counts_old if app == "r1" else counts_new)
    return counts_old, counts_new


def served_more(clients, count=10):
    seen = clients.gets
    wait_until(lambda: clients.gets >= seen + count, f"{count} more answered GETs")


def test_detach_then_attach_fails_no_request(shared_host, shared_api, names, start_app):
    host, api, domain = shared_host, shared_api, names.domain()
    old, new, ip = setup_two_releases(api, names, start_app)
    with LoopingClients(host, domain) as clients:
        served_more(clients)
        api.update_website(names("production_r1"), ip, False, [], [(old.name, "/")])
        # The gap a slow maintainer or a network leaves between the two calls: requests wait
        # at the router for the domain to be attached again, instead of failing.
        wait_until(lambda: api.held_requests(domain) >= 1, "a request to wait for the domain")
        api.update_website(names("production_r2"), ip, False, [domain], [(new.name, "/")])
        wait_until(lambda: post_counts(host, new.port), "the new app to get a write")
        served_more(clients)
    counts_old, counts_new = check_every_post_answered_once(host, clients, old, new)
    assert counts_old and counts_new


def test_move_under_a_write_hold_with_requests_in_flight(
    shared_host, shared_api, names, start_app, tmp_path
):
    host, api, domain = shared_host, shared_api, names.domain()
    old, new, ip = setup_two_releases(api, names, start_app)
    r1, r2 = names("production_r1"), names("production_r2")
    gate = tmp_path / "gate"
    slow = ThreadPoolExecutor(1)
    with LoopingClients(host, domain) as clients:
        served_more(clients)
        in_flight = slow.submit(
            requests.get,
            host.router_url + f"/gated?gate={gate}",
            headers={"Host": domain},
            timeout=60,
        )
        wait_until(
            lambda: f"at gate {gate}" in (tmp_path / f"app-r1-{old.port}.log").read_text(),
            "the slow request to reach the old app",
        )
        assert api.hold_writes(r1) == [domain]
        # Writes already in flight have finished; held ones must not reach the old release.
        old_posts_at_hold = post_counts(host, old.port)
        wait_until(lambda: api.held_requests(r1) >= 1, "a write to be held")
        api.update_website(r1, ip, False, [], [(old.name, "/")])
        api.update_website(r2, ip, False, [domain], [(new.name, "/")])
        assert api.release_writes(r1) == [domain]
        wait_until(lambda: post_counts(host, new.port), "the new app to get the held writes")
        gate.touch()
        served_more(clients)
    # The request that started before the move finished on the old app.
    assert in_flight.result().json()["app"] == "r1"
    slow.shutdown()
    counts_old, counts_new = check_every_post_answered_once(host, clients, old, new)
    assert counts_old == old_posts_at_hold
    assert counts_new


def test_a_detached_domain_that_never_comes_back_ends_in_404(tmp_path, start_app):
    # A host of its own: a wait limit shorter than the other tests'.
    host = make_host(tmp_path / "host", "--wait-limit", "1.5")
    host.start()
    try:
        check_detached_domain_ends_in_404(host, start_app)
    finally:
        host.stop()


def check_detached_domain_ends_in_404(host, start_app):
    api, names = host.api(), Names.fresh()
    old, _, ip = setup_two_releases(api, names, start_app)
    api.update_website(names("production_r1"), ip, False, [], [(old.name, "/")])
    answer = requests.get(host.router_url + "/", headers={"Host": names.domain()}, timeout=15)
    assert answer.status_code == 404
    # It waited for the domain to come back (a domain never attached says "no website serves").
    assert f"domain {names.domain()} is moving and was not attached in time" in answer.text
