"""Benchmark: from a sign-up POST to both emails at the SMTP server, with the worker polling the
SQLite broker at our interval (0.05 s) against kombu's default (1 s), in the same run.

    .venv/bin/python bench/mail_latency.py [--signups 10]

Real parts: the site (WebTest, in process), a celery worker process per interval, aiosmtpd.
"""

import argparse
import configparser
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
BIN = Path(sys.executable).parent


class Mailbox:
    def __init__(self):
        self.arrivals = []
        self.changed = threading.Condition()

    async def handle_DATA(self, server, session, envelope):
        with self.changed:
            self.arrivals.append(time.monotonic())
            self.changed.notify_all()
        return "250 OK"

    def wait_for(self, count, timeout=30):
        with self.changed:
            self.changed.wait_for(lambda: len(self.arrivals) >= count, timeout=timeout)
            return list(self.arrivals)


def run(interval: float, signups: int) -> list[float]:
    import socket

    import webtest
    from aiosmtpd.controller import Controller
    from pyramid.paster import get_appsettings

    from app import main as make_app
    from app.models import Brevet, get_engine
    from app.models.events import default_registration_end
    from app.scripts.initialize_db import initialize

    folder = Path(tempfile.mkdtemp(prefix="randopony-mail-"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        smtp_port = s.getsockname()[1]
    settings = dict(get_appsettings(str(ROOT / "testing.ini")))
    settings.update(
        {
            "sqlalchemy.url": f"sqlite:///{folder / 'db.sqlite'}",
            "celery.broker_url": f"sqla+sqlite:///{folder / 'celery.sqlite'}",
            "celery.polling_interval": str(interval),
            "rider_lists_dir": str(folder / "rider_lists"),
            "private_credentials": str(folder / "private_credentials"),
            "smtp.port": str(smtp_port),
            "initialize.membership_check_url": "http://127.0.0.1:9/{first_name}{last_name}",
        }
    )
    initialize(settings, wrangler_email="b@example.com", wrangler_password="bench-password")
    from datetime import datetime, timedelta

    from sqlalchemy.orm import Session

    engine = get_engine(settings)
    with Session(engine) as db, db.begin():
        start = datetime.now().replace(microsecond=0, second=0) + timedelta(days=10)
        brevet = Brevet(
            region="LM",
            distance=200,
            route_name="Latency",
            start_locn="Here",
            date_time=start,
            organizer_email="org@example.com",
            registration_end=default_registration_end(start),
        )
        db.add(brevet)
        db.flush()
        url = f"/brevets/LM/200/{brevet.url_date}"
    engine.dispose()

    parser = configparser.ConfigParser(interpolation=None)
    parser.read(ROOT / "testing.ini")
    for key, value in settings.items():
        parser.set("app:main", key, value)
    ini = folder / "worker.ini"
    with open(ini, "w") as f:
        parser.write(f)

    mailbox = Mailbox()
    smtp = Controller(mailbox, hostname="127.0.0.1", port=smtp_port)
    smtp.start()
    log = open(folder / "worker.log", "wb")
    worker = subprocess.Popen(
        [BIN / "randopony_worker", str(ini), "--concurrency", "1"],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=dict(os.environ, C_FORCE_ROOT="1"),
        start_new_session=True,
    )
    latencies = []
    try:
        deadline = time.monotonic() + 30
        while b"ready." not in (folder / "worker.log").read_bytes():
            if time.monotonic() > deadline:
                raise SystemExit("worker did not start")
            time.sleep(0.05)
        app = webtest.TestApp(make_app({}, **settings))
        for i in range(signups):
            form = app.get(url + "/entry").forms[0]
            form["email"], form["first_name"], form["last_name"] = f"r{i}@example.org", "R", f"N{i}"
            form["bike_type"] = "single"
            sent = time.monotonic()
            form.submit()
            arrivals = mailbox.wait_for(2 * (i + 1))
            latencies.append(arrivals[2 * i + 1] - sent)
            time.sleep(0.3)  # spread the sign-ups over the poll cycle
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
        smtp.stop()
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--signups", type=int, default=10)
    args = parser.parse_args()
    results = {}
    for interval in (1.0, 0.05):
        latencies = run(interval, args.signups)
        results[interval] = latencies
        print(
            f"polling interval {interval:4.2f} s: sign-up to both emails delivered, "
            f"median {statistics.median(latencies) * 1000:6.0f} ms, "
            f"max {max(latencies) * 1000:6.0f} ms ({len(latencies)} sign-ups)",
            flush=True,
        )
    ratio = statistics.median(results[0.05]) / statistics.median(results[1.0])
    print(f"median latency at 0.05 s polling: {ratio:.2f}x that of kombu's default")


if __name__ == "__main__":
    main()
