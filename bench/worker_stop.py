"""Benchmark: how long a warm shutdown of the celery worker takes (SIGTERM to exit), with
app.worker.stop_promptly against celery's own loop (`celery.stop_promptly = false`), same run.

    .venv/bin/python bench/worker_stop.py [--rounds 6]

Every deploy, promotion and rollback stops a worker at least once, so this is time on the
maintainer's clock. Rounds alternate between the two so drift on a shared machine hits both.
"""

from __future__ import annotations

import argparse
import configparser
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT))


def write_ini(folder: Path, promptly: bool) -> Path:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(ROOT / "testing.ini")
    parser.set("app:main", "sqlalchemy.url", f"sqlite:///{folder}/bench.sqlite")
    parser.set("app:main", "celery.broker_url", f"sqla+sqlite:///{folder}/celery.sqlite")
    parser.set("app:main", "celery.stop_promptly", "true" if promptly else "false")
    ini = folder / f"worker-{'promptly' if promptly else 'celery'}.ini"
    with open(ini, "w") as f:
        parser.write(f)
    return ini


def stop_seconds(ini: Path, log_path: Path) -> float:
    with open(log_path, "wb") as log:
        worker = subprocess.Popen(
            [BIN / "randopony_worker", str(ini), "--concurrency", "2"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(os.environ, C_FORCE_ROOT="1"),
        )
    deadline = time.monotonic() + 60
    while b"ready." not in log_path.read_bytes():
        if time.monotonic() > deadline or worker.poll() is not None:
            worker.kill()
            raise SystemExit(f"the worker did not start: see {log_path}")
        time.sleep(0.05)
    time.sleep(1)  # idle, polling its queue, as between deploys
    started = time.monotonic()
    worker.send_signal(signal.SIGTERM)
    worker.wait(120)
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    from pyramid.paster import get_appsettings

    from app.scripts.initialize_db import initialize

    with tempfile.TemporaryDirectory(prefix="rp-worker-stop-") as tmp:
        folder = Path(tmp)
        inis = {promptly: write_ini(folder, promptly) for promptly in (True, False)}
        initialize(
            dict(get_appsettings(str(inis[True]))),
            wrangler_email="b@example.com",
            wrangler_password="bench-password",
        )
        times: dict[bool, list[float]] = {True: [], False: []}
        for _ in range(args.rounds):
            for promptly in (False, True):
                times[promptly].append(stop_seconds(inis[promptly], folder / "worker.log"))
    for promptly, label in ((False, "celery's loop"), (True, "stop_promptly")):
        runs = ", ".join(f"{t:.2f}" for t in times[promptly])
        print(f"{label:14}: median {statistics.median(times[promptly]):.2f} s ({runs})")
    ratio = statistics.median(times[True]) / statistics.median(times[False])
    print(f"warm shutdown with stop_promptly: {ratio:.2f}x the time of celery's own loop")


if __name__ == "__main__":
    main()
