"""Benchmark: an event page with 100 riders and its entry form, for visitors without and with
a session, against a trivial Pyramid view, both served by waitress with the same settings,
measured with wrk in the same run.

    .venv/bin/python bench/site.py [--seconds 8] [--rounds 3] [--riders 100]

Rounds alternate between the cases so drift on a shared machine hits them alike; the figures
that matter are the ratios of medians to the trivial view (goals: the event page at 0.6x without
a session, 0.5x with one).
"""

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode
from urllib.request import HTTPRedirectHandler, Request, build_opener, urlopen

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

WAITRESS = {"threads": 4}
WRANGLER = ("bench@example.com", "bench-password")
COOKIE = "randopony_session"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def settings_for(folder: Path) -> dict:
    from pyramid.paster import get_appsettings

    settings = dict(get_appsettings(str(ROOT / "production.ini")))
    settings.update(
        {
            "sqlalchemy.url": f"sqlite:///{folder / 'bench.sqlite'}",
            "celery.broker_url": f"sqla+sqlite:///{folder / 'celery.sqlite'}",
            "rider_lists_dir": str(folder / "rider_lists"),
            "private_credentials": str(folder / "private_credentials"),
            "production_deployment": "true",
        }
    )
    return settings


def prepare(folder: Path, riders: int) -> str:
    """A production-like database with one brevet and its riders; returns the event's path."""
    from datetime import datetime, time, timedelta

    from sqlalchemy.orm import Session

    from app.models import Brevet, BrevetRider, get_engine
    from app.models.events import default_registration_end
    from app.scripts.initialize_db import initialize

    settings = settings_for(folder)
    initialize(settings, wrangler_email=WRANGLER[0], wrangler_password=WRANGLER[1])
    engine = get_engine(settings)
    with Session(engine) as db, db.begin():
        start = datetime.combine(datetime.now().date() + timedelta(days=10), time(7))
        brevet = Brevet(
            region="LM",
            distance=200,
            route_name="Benchmark Loop",
            start_locn="Somewhere",
            date_time=start,
            organizer_email="org@example.com",
            registration_end=default_registration_end(start),
        )
        db.add(brevet)
        db.flush()
        for i in range(riders):
            db.add(
                BrevetRider(
                    brevet_id=brevet.id,
                    email=f"rider{i}@example.com",
                    first_name=f"Rider{i}",
                    last_name=f"Number{i}",
                    bike_type="single",
                    comment="Looking forward to it" if i % 3 == 0 else None,
                )
            )
        path = f"/brevets/LM/200/{brevet.url_date}"
    engine.dispose()
    return path


def serve(kind: str, folder: Path, port: int) -> None:
    from waitress import serve as waitress_serve

    if kind == "trivial":
        from pyramid.config import Configurator
        from pyramid.response import Response

        with Configurator() as config:
            config.add_route("hello", "/")
            config.add_view(lambda request: Response("Hello, rider!"), route_name="hello")
            app = config.make_wsgi_app()
    else:
        from app import main

        app = main({}, **settings_for(folder))
    waitress_serve(app, host="127.0.0.1", port=port, _quiet=True, **WAITRESS)


def start(kind: str, folder: Path, path: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, __file__, "--serve", kind, "--folder", str(folder), "--port", str(port)]
    )
    url = f"http://127.0.0.1:{port}{path}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return process, url
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit(f"{kind} server did not answer at {url}")


class NoRedirect(HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def session_cookie(answer) -> str:
    for header in answer.headers.get_all("Set-Cookie") or ():
        if header.startswith(COOKIE + "="):
            return header.split(";", 1)[0]
    raise SystemExit("the site sent no session cookie")


def form_session(base: str, path: str) -> tuple[str, str]:
    """The cookie and CSRF token of a visitor who opened a form."""
    with urlopen(base + path, timeout=10) as answer:
        return session_cookie(answer), CSRF.search(answer.read().decode()).group(1)


def wrangler_session(base: str) -> str:
    cookie, token = form_session(base, "/admin/login")
    body = urlencode({"email": WRANGLER[0], "password": WRANGLER[1], "csrf_token": token})
    request = Request(base + "/admin/login", body.encode(), headers={"Cookie": cookie})
    try:
        build_opener(NoRedirect).open(request, timeout=30)
    except OSError as error:  # the 302 after a login, refused to be followed
        if getattr(error, "code", None) == 302:
            return session_cookie(error)
        raise
    raise SystemExit("the wrangler's login did not redirect")


def flash_session(folder: Path, form_cookie: str) -> str:
    """A visitor just after their sign-up: their session holds a thank-you message. Signed here
    with the site's secret rather than by signing up, which would ask the club's membership
    service on the network. wrk sends it again and again, so every answer shows the message,
    takes it out of the session and sends a new cookie."""
    from pyramid.session import JSONSerializer, SignedSerializer

    from app import settings as app_settings

    secret = app_settings.load(settings_for(folder))["session_secret"]
    signer = SignedSerializer(secret, "pyramid.session.", "sha512", serializer=JSONSerializer())
    accessed, created, state = signer.loads(form_cookie.split("=", 1)[1].encode())
    state["_f_success"] = [
        "Thank you, Rider! You are pre-registered for LM200 Benchmark Loop. "
        "A confirmation email is on its way to rider@example.com."
    ]
    return f"{COOKIE}={signer.dumps((accessed, created, state)).decode()}"


def check(kind: str, url: str, headers, expected: str) -> None:
    """Measure the page a visitor would see, not an error page or another visitor's."""
    request = Request(url, headers=dict(header.split(": ", 1) for header in headers))
    with urlopen(request, timeout=10) as answer:
        if expected not in answer.read().decode():
            raise SystemExit(f"{kind}: the page at {url} does not show {expected!r}")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def parse_duration(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1, "s": 1000, "m": 60000}[unit]


def wrk(url: str, seconds: int, headers=()) -> dict:
    extra = [arg for header in headers for arg in ("-H", header)]
    out = subprocess.run(
        ["wrk", "-t2", "-c16", f"-d{seconds}s", "--latency", *extra, url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p99 = parse_duration(re.search(r"\s99%\s+(\S+)", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    return {
        "rps": rps,
        "requests": int(re.search(r"(\d+) requests in", out).group(1)),
        "p99_ms": p99,
        "non_2xx": int(errors.group(1)) if errors else 0,
        "socket_errors": socket_errors.group(1) if socket_errors else "",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--riders", type=int, default=100)
    parser.add_argument("--serve", choices=["trivial", "event"], help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.folder, args.port)
        return
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install wrk (make test installs it)")

    folder = Path(tempfile.mkdtemp(prefix="randopony-bench-"))
    try:
        event_path = prepare(folder, args.riders)
        servers = {
            "trivial": start("trivial", folder, "/"),
            "event": start("event", folder, event_path),
        }
        base = servers["event"][1].removesuffix(event_path)
        form_cookie, _ = form_session(base, event_path + "/entry")
        sessions = {
            "form": form_cookie,  # opened the entry form: a session with its CSRF token
            "flash": flash_session(folder, form_cookie),
            "wrangler": wrangler_session(base),
        }
        event_url, form_url = servers["event"][1], servers["event"][1] + "/entry"
        last_rider = f"Rider{args.riders - 1} Number{args.riders - 1}"
        trivial_pid, event_pid = servers["trivial"][0].pid, servers["event"][0].pid
        # (name, server's pid, URL, request headers, what its page must show). Without a cookie,
        # a visitor gets the cached page as it is; with one, the cached page with their own parts.
        cases = [
            ("trivial", trivial_pid, servers["trivial"][1], (), "Hello, rider!"),
            ("event", event_pid, event_url, (), last_rider),
            ("event-session", event_pid, event_url, (f"Cookie: {sessions['form']}",), last_rider),
            (
                "event-flash",
                event_pid,
                event_url,
                (f"Cookie: {sessions['flash']}",),
                "Thank you, Rider!",
            ),
            (
                "event-wrangler",
                event_pid,
                event_url,
                (f"Cookie: {sessions['wrangler']}",),
                ">Admin</a>",
            ),
            (
                "form-session",
                event_pid,
                form_url,
                (f"Cookie: {sessions['form']}",),
                'name="csrf_token"',
            ),
            ("form-new", event_pid, form_url, (), 'name="csrf_token"'),
        ]
        for kind, _, url, headers, expected in cases:
            check(kind, url, headers, expected)
        results = {name: [] for name, *_ in cases}
        try:
            for _, _, url, headers, _ in cases:
                wrk(url, 2, headers)  # warm up
            for round_number in range(args.rounds):
                for kind, pid, url, headers, _ in cases:
                    # The server's CPU time per request too: on a shared machine, throughput
                    # moves with everyone else's load, CPU time much less.
                    before = cpu_seconds(pid)
                    result = wrk(url, args.seconds, headers)
                    result["cpu_us"] = (cpu_seconds(pid) - before) / result["requests"] * 1e6
                    results[kind].append(result)
                    print(
                        f"round {round_number + 1} {kind:15s} {result['rps']:8.0f} req/s  "
                        f"p99 {result['p99_ms']:6.1f} ms  CPU {result['cpu_us']:5.0f} us/request  "
                        f"non-2xx {result['non_2xx']}",
                        flush=True,
                    )
        finally:
            for process, _ in servers.values():
                process.terminate()
                process.wait(10)
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    summary = {
        kind: {
            "rps": statistics.median(r["rps"] for r in runs),
            "p99_ms": statistics.median(r["p99_ms"] for r in runs),
            "cpu_us": round(statistics.median(r["cpu_us"] for r in runs)),
            "non_2xx": sum(r["non_2xx"] for r in runs),
        }
        for kind, runs in results.items()
    }
    trivial, trivial_cpu = summary["trivial"]["rps"], summary["trivial"]["cpu_us"]
    for kind in results:
        summary[kind]["ratio"] = round(summary[kind]["rps"] / trivial, 2)
        summary[kind]["cpu_ratio"] = round(trivial_cpu / summary[kind]["cpu_us"], 2)
    print(json.dumps(summary, indent=2))
    print(
        f"event page with {args.riders} riders, ratio to the trivial view: "
        f"{summary['event']['ratio']}x without a session (goal 0.6x), "
        f"{summary['event-session']['ratio']}x with one (goal 0.5x)"
    )
    others = [kind for kind in results if kind != "trivial"]
    print(
        "RESULT "
        + " ".join(f"{kind}={summary[kind]['ratio']}" for kind in others)
        + " "
        + " ".join(f"{kind}_cpu={summary[kind]['cpu_ratio']}" for kind in others)
        + f" trivial_rps={trivial:.0f}"
    )


if __name__ == "__main__":
    main()
