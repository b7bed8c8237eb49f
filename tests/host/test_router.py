"""What a browser sees through the router: pages, headers, big bodies, held writes, logs."""

import hashlib
import re
import shutil
import subprocess
import threading
import time

import pytest
import requests

from tests.conftest import wait_until

DOMAIN = "randopony.localhost"
MB20 = 20 * 1024 * 1024


@pytest.fixture
def site(host, api, start_app):
    """A website for DOMAIN served by a running sample app."""
    app = api.create_app("randopony2026r1")
    start_app("r1", app.port)
    api.create_website("randopony", api.list_ips()[0], False, [DOMAIN], [(app.name, "/")])
    return app


def get(host, path="/", domain=DOMAIN, **kwargs):
    headers = {"Host": f"{domain}:{host.router_port}", **kwargs.pop("headers", {})}
    return requests.get(host.router_url + path, headers=headers, timeout=20, **kwargs)


def wait_for_text(path, text, timeout=30.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        content = path.read_text() if path.exists() else ""
        if text in content:
            return content
        time.sleep(0.1)
    raise AssertionError(f"{text!r} not in {path} after {timeout} s:\n{content}")


def test_unknown_domain_gets_the_hosts_404_page(host, site):
    answer = get(host, "/events", domain="nosuchsite.localhost")
    assert answer.status_code == 404
    assert answer.headers["Content-Type"].startswith("text/html")
    assert "<h1>404 Not Found</h1>" in answer.text
    assert "no website serves nosuchsite.localhost" in answer.text
    wait_for_text(host.log, "404 GET nosuchsite.localhost")
    wait_for_text(
        host.root / "logs/frontend/_unknown_domains.access.log", '"GET /events HTTP/1.1" 404'
    )


def test_app_that_does_not_answer_gets_a_502_page_naming_the_site(host, api):
    app = api.create_app("stopped_app")
    api.create_website("sleepy", api.list_ips()[0], False, ["sleepy.localhost"], [(app.name, "/")])
    answer = get(host, domain="sleepy.localhost")
    assert answer.status_code == 502
    assert "<h1>502 Bad Gateway</h1>" in answer.text
    assert "The site sleepy is down: its app stopped_app does not answer" in answer.text
    wait_for_text(host.log, f"app stopped_app on port {app.port} does not answer")
    wait_for_text(host.root / "logs/frontend/sleepy.access.log", '"GET / HTTP/1.1" 502')


def test_app_sees_the_original_host_and_forwarded_headers(host, site):
    seen = get(host, "/whoami", headers={"X-Forwarded-For": "203.0.113.9"}).json()
    headers = seen["headers"]
    assert headers["host"] == f"{DOMAIN}:{host.router_port}"
    assert headers["x-forwarded-host"] == f"{DOMAIN}:{host.router_port}"
    assert headers["x-forwarded-proto"] == "http"
    assert headers["x-forwarded-for"] == "203.0.113.9, 127.0.0.1"
    assert "x-forwarded-prefix" not in headers


def test_connections_are_kept_alive_both_ways(host, site):
    with requests.Session() as browser:
        first = browser.get(host.router_url, headers={"Host": DOMAIN}, timeout=5)
        second = browser.get(host.router_url, headers={"Host": DOMAIN}, timeout=5)
    assert first.headers.get("Connection", "keep-alive").lower() == "keep-alive"
    # The same pooled connection to the app carried both requests.
    assert first.json()["remote_port"] == second.json()["remote_port"]


@pytest.mark.host_args("--max-body", str(MB20))
def test_large_bodies_are_streamed_intact(host, site):
    answer = get(host, f"/big?bytes={MB20}", stream=True)
    digest, length = hashlib.sha256(), 0
    for chunk in answer.iter_content(1 << 20):
        digest.update(chunk)
        length += len(chunk)
    expected = hashlib.sha256((bytes(range(256)) * 4096) * 20).hexdigest()
    assert (length, digest.hexdigest()) == (MB20, expected)

    body = bytes(range(256)) * (MB20 // 256)
    uploaded = requests.post(
        host.router_url + "/digest", data=body, headers={"Host": DOMAIN}, timeout=20
    ).json()
    assert uploaded == {"sha256": hashlib.sha256(body).hexdigest(), "length": MB20}

    # A body of unknown length (chunked) too.
    pieces = (body[i : i + (1 << 20)] for i in range(0, MB20, 1 << 20))
    chunked = requests.post(
        host.router_url + "/digest", data=pieces, headers={"Host": DOMAIN}, timeout=20
    ).json()
    assert chunked == uploaded


def test_held_writes_wait_while_reads_go_on(host, api, site):
    assert api.hold_writes("randopony") == [DOMAIN]
    post = {}

    def send_post():
        post["answer"] = requests.post(
            host.router_url + "/register?id=held", headers={"Host": DOMAIN}, timeout=60
        )

    poster = threading.Thread(target=send_post)
    poster.start()
    wait_until(lambda: api.held_requests("randopony") == 1, "the POST to wait at the router")
    assert get(host).status_code == 200  # reads go on meanwhile
    assert api.held_requests("randopony") == 1 and "answer" not in post
    assert requests.get(f"http://127.0.0.1:{site.port}/posts", timeout=5).json() == {}

    assert api.release_writes("randopony") == [DOMAIN]
    poster.join(60)
    assert post["answer"].status_code == 200
    assert api.held_requests("randopony") == 0
    assert requests.get(f"http://127.0.0.1:{site.port}/posts", timeout=5).json() == {"held": 1}


def test_a_hold_lapses_by_itself(host, api, site):
    """Nobody releases the hold: once its time is up, the write goes through (the router's
    wait limit, 5 s here, would otherwise answer 503)."""
    api.hold_writes("randopony", seconds=1)
    answer = requests.post(host.router_url + "/register?id=x", headers={"Host": DOMAIN}, timeout=60)
    assert answer.status_code == 200
    assert requests.get(f"http://127.0.0.1:{site.port}/posts", timeout=5).json() == {"x": 1}


def test_access_log_per_website_has_status_and_duration(host, site):
    get(host, "/events?club=bc")
    content = wait_for_text(host.root / "logs/frontend/randopony.access.log", "/events?club=bc")
    line = next(line for line in content.splitlines() if "/events?club=bc" in line)
    assert '"GET /events?club=bc HTTP/1.1" 200 ' in line
    assert float(line.rsplit(" ", 1)[1]) >= 0  # the duration, in seconds


def test_a_browser_opens_a_localhost_name_without_dns(host, site):
    # The machine's resolver knows no *.localhost names; the browser resolves them itself.
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("chromium is not installed: `make test` installs it (Debian package chromium)")
    shown = subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--dump-dom",
            f"http://{DOMAIN}:{host.router_port}/from-a-browser",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert '"path": "/from-a-browser"' in shown.stdout, shown.stderr[-2000:]


def test_a_restarted_app_is_reached_again_at_once(host, site, start_app, tmp_path):
    with requests.Session() as browser:
        assert browser.get(host.router_url, headers={"Host": DOMAIN}, timeout=5).ok
        # The app restarts on its port; the router's pooled connection to it is now dead.
        start_app.processes[-1].terminate()
        start_app.processes[-1].wait(10)
        start_app("r1-again", site.port)
        answer = browser.get(host.router_url, headers={"Host": DOMAIN}, timeout=5)
    assert answer.status_code == 200
    assert answer.json()["app"] == "r1-again"


def test_a_request_the_app_refused_waits_for_it_and_is_sent_once(host, api, start_app):
    """A refused connection never reached the app: even a POST is sent again, and once only,
    when the app answers within the router's retry window."""
    app = api.create_app("restarting_app")
    api.create_website("restarting", api.list_ips()[0], False, [DOMAIN], [(app.name, "/")])
    answer = {}

    def send_post():
        answer["post"] = requests.post(
            host.router_url + "/register?id=refused-once",
            data=b"name=x",
            headers={"Host": DOMAIN},
            timeout=60,
        )

    poster = threading.Thread(target=send_post)
    poster.start()
    wait_for_text(host.log, "retrying POST")
    start_app("r1", app.port)
    poster.join(60)
    assert answer["post"].status_code == 200
    assert requests.get(f"http://127.0.0.1:{app.port}/posts", timeout=5).json() == {
        "refused-once": 1
    }


def test_a_read_whose_app_dies_under_it_is_answered_by_the_next(host, site, start_app, tmp_path):
    """The app process dies while it holds a GET: the router sends it again, and the app that
    comes back answers it."""
    answer = {}

    def slow_read():
        answer["get"] = get(host, "/slow?seconds=30&only=r1")

    reader = threading.Thread(target=slow_read)
    reader.start()
    first = start_app.processes[-1]
    wait_for_text(tmp_path / f"app-r1-{site.port}.log", "slow read for r1", timeout=30)
    first.kill()
    first.wait(10)
    start_app("r1-again", site.port)
    reader.join(60)
    assert answer["get"].status_code == 200
    assert answer["get"].json()["app"] == "r1-again"


def test_a_read_cut_off_half_way_by_a_dying_app_is_sent_again(host, site, start_app, tmp_path):
    """The app dies after the first MiB of a 2 MiB answer: the browser gets the whole answer,
    from the app that comes back, and never a truncated one."""
    answer = {}

    def read():
        answer["get"] = get(host, "/big?bytes=2097152&stall=r1")

    reader = threading.Thread(target=read)
    reader.start()
    first = start_app.processes[-1]
    wait_for_text(tmp_path / f"app-r1-{site.port}.log", "stalled mid-answer: r1", timeout=30)
    first.kill()
    first.wait(10)
    start_app("r1-again", site.port)
    reader.join(60)
    assert answer["get"].status_code == 200
    assert answer["get"].headers["X-App"] == "r1-again"
    assert answer["get"].content == (bytes(range(256)) * 4096) * 2


def send_write_held_at_the_app(host, start_app, api, tmp_path, app_name):
    """A website whose app holds a POST behind a gate, then dies; the app comes back."""
    app = api.create_app("writer")
    start_app(app_name, app.port)
    api.create_website("writes", api.list_ips()[0], False, [DOMAIN], [(app.name, "/")])
    assert get(host).status_code == 200  # the router hears what the app says of itself
    gate = tmp_path / "gate"
    answer = {}

    def write():
        answer["post"] = requests.post(
            host.router_url + f"/submit?id=w1&gate={gate}&gate_app={app_name}",
            data=b"rider=1",
            headers={"Host": DOMAIN},
            timeout=60,
        )

    writer = threading.Thread(target=write)
    writer.start()
    log = wait_for_text(tmp_path / f"app-{app_name}-{app.port}.log", f"at gate {gate}", 30)
    first_id = re.search(r"\(request ([0-9a-f]{32})\)", log).group(1)
    start_app.processes[-1].kill()
    start_app.processes[-1].wait(10)
    start_app(f"{app_name}-again", app.port)
    writer.join(60)
    return answer["post"], first_id


def test_a_write_whose_app_died_goes_again_to_an_app_that_does_it_once(
    host, api, start_app, tmp_path
):
    answer, first_id = send_write_held_at_the_app(host, start_app, api, tmp_path, "replay-r1")
    assert answer.status_code == 200
    assert answer.json()["app"] == "replay-r1-again"
    assert answer.json()["request"] == first_id  # the same id: the app can tell it is a retry
    assert "X-Randopony-Replay" not in answer.headers  # between the router and its apps


def test_a_write_whose_app_died_is_not_sent_twice_to_an_app_that_cannot_tell(
    host, api, start_app, tmp_path
):
    answer, _ = send_write_held_at_the_app(host, start_app, api, tmp_path, "plain-r1")
    assert answer.status_code == 502


def test_the_request_id_is_the_routers_own(host, site):
    seen = get(host, "/whoami", headers={"X-Randopony-Request": "f" * 32}).json()["headers"]
    assert re.fullmatch(r"[0-9a-f]{32}", seen["x-randopony-request"])
    assert seen["x-randopony-request"] != "f" * 32


def test_headers_named_in_connection_are_not_passed_on(host, site):
    seen = get(
        host, "/whoami", headers={"Connection": "keep-alive, X-Hop-Secret", "X-Hop-Secret": "1"}
    ).json()["headers"]
    assert "x-hop-secret" not in seen and "connection" not in seen


def test_a_body_over_the_limit_gets_413_and_never_reaches_the_app(host, site):
    """64 KiB by default (forms are a few kB), whether its length is given or not."""
    over = b"x" * (64 * 1024 + 1)
    said = requests.post(
        host.router_url + "/register?id=big", data=over, headers={"Host": DOMAIN}, timeout=20
    )
    chunked = requests.post(
        host.router_url + "/register?id=big-chunked",
        data=(over[i : i + 8192] for i in range(0, len(over), 8192)),
        headers={"Host": DOMAIN},
        timeout=20,
    )
    assert (said.status_code, chunked.status_code) == (413, 413)
    assert "larger than 65536 bytes" in said.text
    at_limit = requests.post(
        host.router_url + "/register?id=ok", data=over[:-1], headers={"Host": DOMAIN}, timeout=20
    )
    assert at_limit.status_code == 200
    assert requests.get(f"http://127.0.0.1:{site.port}/posts", timeout=5).json() == {"ok": 1}


@pytest.mark.parametrize(
    "bad",
    [
        f"{DOMAIN}:1, evil.example",
        f"{DOMAIN} evil.example",
        f"{DOMAIN}:80:81",
        f"{DOMAIN}/x",
        f"user@{DOMAIN}",
        "",
    ],
)
def test_a_host_that_is_not_name_and_port_gets_400_and_reaches_no_app(host, site, bad):
    answer = requests.get(host.router_url + "/whoami", headers={"Host": bad}, timeout=20)
    assert answer.status_code == 400
    assert "The Host of the request is not name[:port]." in answer.text


def test_the_app_gets_only_the_host_the_router_checked(host, site):
    seen = get(host, "/whoami", headers={"X-Forwarded-Host": "evil.example"}).json()["headers"]
    assert seen["host"] == seen["x-forwarded-host"] == f"{DOMAIN}:{host.router_port}"
    upper = requests.get(
        host.router_url + "/whoami", headers={"Host": "RandoPony.Localhost."}, timeout=20
    ).json()["headers"]
    assert upper["host"] == "randopony.localhost."


SPOOFED = {
    "X-Forwarded-Proto": "https",
    "X-Forwarded-Prefix": "/evil",
    "Forwarded": "for=203.0.113.9;proto=https;host=evil.example",
    "X-Forwarded-Port": "443",
    "X-Real-IP": "203.0.113.9",
}


def test_a_clients_own_proxy_headers_are_not_passed_on(host, site):
    seen = get(host, "/whoami", headers=SPOOFED).json()["headers"]
    assert seen["x-forwarded-proto"] == "http"  # the router's own scheme
    for name in ("x-forwarded-prefix", "forwarded", "x-forwarded-port", "x-real-ip"):
        assert name not in seen, name


@pytest.mark.host_args("--trusted-front-end", "127.0.0.1", "--trusted-front-end", "::1")
def test_a_trusted_front_ends_forwarded_proto_is_passed_on(host, site):
    def proto(said: str) -> str:
        headers = {"X-Forwarded-Proto": said}
        return get(host, "/whoami", headers=headers).json()["headers"]["x-forwarded-proto"]

    assert proto("https") == "https"
    assert proto("http") == "http"
    # Anything but exactly http or https is the front end's mistake: the router's own scheme.
    for said in ("HTTPS", "https, http", "https;", "ftp", ""):
        assert proto(said) == "http", said
    seen = get(host, "/whoami", headers=SPOOFED).json()["headers"]
    assert "x-forwarded-prefix" not in seen and "forwarded" not in seen


@pytest.mark.host_args("--trusted-front-end", "192.0.2.1")
def test_a_forwarded_proto_from_an_untrusted_peer_is_ignored(host, site):
    seen = get(host, "/whoami", headers={"X-Forwarded-Proto": "https"}).json()["headers"]
    assert seen["x-forwarded-proto"] == "http"
