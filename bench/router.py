"""Benchmark the host's router against the same waitress app hit directly, in the same run.

    .venv/bin/python bench/router.py [--seconds 8] [--rounds 2]

Both runs use wrk with keep-alive (-t2 -c16) on 127.0.0.1. Then a looping client times one
domain move (detach + attach through the panel): the longest request it saw, and any failure.
Prints the figures as Markdown.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

CHECKOUT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(CHECKOUT))

from deploy.host.server import HostSettings, open_store  # noqa: E402
from deploy.remote.panel_client import HostingAPI  # noqa: E402

DOMAIN = "bench.localhost"
USER, PASSWORD = "bench", "bench password"


def hello_app(environ, start_response):
    body = b"Hello from the benchmark app\n"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing answers on port {port}")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wrk(url: str, seconds: int, host: str | None = None) -> tuple[float, float, int]:
    """Requests per second, p99 latency in ms, and the number of requests."""
    command = ["wrk", "-t2", "-c16", f"-d{seconds}s", "--latency"]
    if host:
        command += ["-H", f"Host: {host}"]
    output = subprocess.run(command + [url], capture_output=True, text=True, check=True).stdout
    if "Non-2xx" in output or "Socket errors" in output:
        raise RuntimeError(f"wrk saw errors:\n{output}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))
    value, unit = re.search(r"99%\s+([\d.]+)(us|ms|s)", output).groups()
    p99 = float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
    count = int(re.search(r"(\d+) requests in", output).group(1))
    return rps, p99, count


def time_a_move(router_url: str, api: HostingAPI, ip: str, threads: int = 4) -> dict:
    stopping = threading.Event()
    results = {"requests": 0, "failures": 0, "longest": 0.0, "before": 0.0}
    lock = threading.Lock()
    moving = threading.Event()

    def loop():
        session = requests.Session()
        while not stopping.is_set():
            started = time.monotonic()
            try:
                ok = session.get(router_url, headers={"Host": DOMAIN}, timeout=15).ok
            except requests.RequestException:
                ok = False
            took = time.monotonic() - started
            with lock:
                results["requests"] += 1
                results["failures"] += not ok
                key = "longest" if moving.is_set() else "before"
                results[key] = max(results[key], took)

    workers = [threading.Thread(target=loop) for _ in range(threads)]
    for worker in workers:
        worker.start()
    time.sleep(1.0)
    moving.set()
    started = time.monotonic()
    api.update_website("bench_a", ip, False, [], [("bench_app", "/")])
    api.update_website("bench_b", ip, False, [DOMAIN], [("bench_app", "/")])
    results["move_calls"] = time.monotonic() - started
    time.sleep(1.0)
    stopping.set()
    for worker in workers:
        worker.join()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--serve-app", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_app:
        import logging

        import waitress

        # Queue-depth warnings are expected under wrk's load; keep the output to the figures.
        logging.getLogger("waitress.queue").setLevel(logging.ERROR)
        waitress.serve(hello_app, host="127.0.0.1", port=args.serve_app, threads=4, _quiet=True)
        return 0

    processes = []
    with tempfile.TemporaryDirectory(prefix="router-bench-") as tmp:
        root = Path(tmp)
        store = open_store(HostSettings(root=root))
        store.set_password(USER, PASSWORD)
        store.close()
        panel_port, router_port = free_port(), free_port()
        try:
            host = subprocess.Popen(
                [sys.executable, "-m", "deploy.host.server", "serve", "--root", str(root)]
                + ["--panel", f"127.0.0.1:{panel_port}", "--router", f"127.0.0.1:{router_port}"],
                cwd=CHECKOUT,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            processes.append(host)
            wait_for_port(panel_port)
            api = HostingAPI(f"http://127.0.0.1:{panel_port}/")
            api.login(USER, PASSWORD)
            ip = api.list_ips()[0]
            app = api.create_app("bench_app")
            processes.append(
                subprocess.Popen([sys.executable, __file__, "--serve-app", str(app.port)])
            )
            wait_for_port(app.port)
            wait_for_port(router_port)
            api.create_website("bench_a", ip, False, [DOMAIN], [("bench_app", "/")])
            api.create_website("bench_b", ip, False, [], [("bench_app", "/")])

            direct_url = f"http://127.0.0.1:{app.port}/"
            router_url = f"http://127.0.0.1:{router_port}/"
            wrk(direct_url, 1)
            wrk(router_url, 1, DOMAIN)
            direct, routed = [], []
            # CPU time each process spends per request, to see what limits the ratio.
            cpu = {"direct": [0.0, 0.0, 0], "routed": [0.0, 0.0, 0]}
            for _ in range(args.rounds):
                for name, runs, url, host_header in (
                    ("direct", direct, direct_url, None),
                    ("routed", routed, router_url, DOMAIN),
                ):
                    before = cpu_seconds(host.pid), cpu_seconds(processes[1].pid)
                    runs.append(wrk(url, args.seconds, host_header))
                    cpu[name][0] += cpu_seconds(host.pid) - before[0]
                    cpu[name][1] += cpu_seconds(processes[1].pid) - before[1]
                    cpu[name][2] += runs[-1][2]
            move = time_a_move(router_url, api, ip)
        finally:
            for process in processes:
                process.terminate()
                process.wait(10)

    def mean(runs, index):
        return statistics.mean(run[index] for run in runs)

    ratio = mean(routed, 0) / mean(direct, 0)
    print("| run | requests/s | p99 latency |\n|---|---:|---:|")
    for name, runs in (("waitress direct", direct), ("through the router", routed)):
        each = ", ".join(f"{rps:,.0f}" for rps, _, _ in runs)
        print(f"| {name} | {mean(runs, 0):,.0f} ({each}) | {mean(runs, 1):.1f} ms |")
    print(f"\nRouter / direct: {ratio:.2f}x (wrk -t2 -c16 -d{args.seconds}s, {args.rounds} rounds)")
    for name, (router_cpu, app_cpu, count) in cpu.items():
        print(
            f"CPU per request, {name}: router {router_cpu / count * 1e6:.0f} us, "
            f"waitress {app_cpu / count * 1e6:.0f} us"
        )
    print(
        f"\nDomain move (detach + attach, two panel calls: {move['move_calls'] * 1000:.0f} ms): "
        f"{move['requests']} requests by 4 looping clients, {move['failures']} failed; "
        f"longest request during the move {move['longest'] * 1000:.0f} ms "
        f"(before it: {move['before'] * 1000:.0f} ms)."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
