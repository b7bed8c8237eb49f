"""Benchmark: init_staging on a fresh host root against deploy_staging after a one-file change,
in the same run, on the local host (panel and router under supervisord, as `make run` has them).

    .venv/bin/python bench/deploy.py [--redeploys 3]

Goal: a redeploy under 5 s and at most a fifth of the fresh deploy. uv's cache is warm, as it is
on any machine that has deployed once.
"""

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from deploy.flows import staging  # noqa: E402
from deploy.host import service, supervisor  # noqa: E402
from deploy.remote.target import Target  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--redeploys", type=int, default=3)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="rp-bench-"))
    checkout = Path(tempfile.mkdtemp(prefix="rp-bench-checkout-"))
    subprocess.run(
        [
            "rsync",
            "-a",
            "--exclude=.venv",
            "--exclude=var",
            "--exclude=.git",
            f"{ROOT}/",
            f"{checkout}/",
        ],
        check=True,
    )
    subprocess.run(
        [
            str(Path(sys.executable).parent / "randopony-host"),
            "set-password",
            "--root",
            str(root),
            "randopony",
        ],
        input="bench-password\n",
        text=True,
        check=True,
        capture_output=True,
    )
    panel, router = free_port(), free_port()
    os.environ["RANDOPONY_HOSTING_PASSWORD"] = "bench-password"
    lines: list[str] = []
    target = Target(
        host_root=str(root),
        hosting_api=f"http://127.0.0.1:{panel}/",
        checkout=checkout,
        echo=lines.append,
    )
    try:
        service.host_up(root, panel, router)
        started = time.monotonic()
        staging.init_staging(target, None, "bench-wrangler-pw")
        fresh = time.monotonic() - started
        print(f"init_staging on a fresh host root: {fresh:.1f} s", flush=True)
        redeploys = []
        template = checkout / "app/templates/about_pony.jinja2"
        for i in range(args.redeploys):
            template.write_text(template.read_text() + f"\n{{# change {i} #}}\n")
            started = time.monotonic()
            staging.deploy_staging(target)
            redeploys.append(time.monotonic() - started)
            print(f"deploy_staging after a one-file change: {redeploys[-1]:.1f} s", flush=True)
        steps = [line for line in lines if line.startswith("✓")][-5:]
        print("last redeploy's steps: " + "; ".join(s[2:] for s in steps))
    finally:
        for sock in (root / "webapps").glob("*/supervisor.sock"):
            supervisor.shutdown(sock)
        service.host_down(root)
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(checkout, ignore_errors=True)
    median = statistics.median(redeploys)
    ratio = median / fresh
    print(
        f"redeploy median {median:.1f} s = {ratio:.2f}x the fresh deploy "
        f"(goals: under 5 s: {'met' if median < 5 else 'NOT met'}; "
        f"at most 0.2x: {'met' if ratio <= 0.2 else 'NOT met'})"
    )


if __name__ == "__main__":
    main()
