"""Benchmark: an event page with 100 riders against a trivial Pyramid view, both served by
waitress with the same settings, measured with wrk in the same run.

    .venv/bin/python bench/site.py [--seconds 8] [--rounds 3] [--riders 100]

Rounds alternate between the two servers so drift on a shared machine hits both alike; the
figure that matters is the ratio of medians (goal: event page at 0.6x the trivial view or better).
"""

import argparse
import json
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.request import urlopen

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

WAITRESS = {"threads": 4}


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
    initialize(settings, wrangler_email="bench@example.com", wrangler_password="bench-password")
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
        # (name, server, request headers): a rider without a session gets the cached page; one
        # with a session cookie (after a sign-up, a wrangler) gets it rendered every time.
        cases = [
            ("trivial", "trivial", ()),
            ("event", "event", ()),
            ("event-rendered", "event", ("Cookie: randopony_session=bench",)),
        ]
        results = {name: [] for name, _, _ in cases}
        try:
            for _, server, headers in cases:
                wrk(servers[server][1], 2, headers)  # warm up
            for round_number in range(args.rounds):
                for kind, server, headers in cases:
                    result = wrk(servers[server][1], args.seconds, headers)
                    results[kind].append(result)
                    print(
                        f"round {round_number + 1} {kind:14s} {result['rps']:8.0f} req/s  "
                        f"p99 {result['p99_ms']:6.1f} ms  non-2xx {result['non_2xx']}",
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
            "non_2xx": sum(r["non_2xx"] for r in runs),
        }
        for kind, runs in results.items()
    }
    summary["ratio"] = round(summary["event"]["rps"] / summary["trivial"]["rps"], 2)
    summary["ratio_rendered"] = round(
        summary["event-rendered"]["rps"] / summary["trivial"]["rps"], 2
    )
    print(json.dumps(summary, indent=2))
    goal = "met" if summary["ratio"] >= 0.6 else "NOT met"
    print(
        f"event page with {args.riders} riders at {summary['ratio']}x the trivial view "
        f"(goal 0.6x: {goal}); rendered for a visitor with a session: {summary['ratio_rendered']}x"
    )


if __name__ == "__main__":
    main()
