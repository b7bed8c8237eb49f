"""A reproduction, fit to send upstream, of the crash the site's app met under load: a
threaded waitress server whose requests call `requests.get` on a refused port (as the app's
membership check did on a machine without internet) while they build many small objects (as
the app did rendering a rider list of thousands). Nothing of RandoPony is in it.

    python bench/crash_repro/charset_normalizer_threads.py [--seconds 180] [--pure]
                                                           [--debug-malloc]

It serves on a free loopback port in a child process, drives it with 8 keep-alive clients for
--seconds, and reports how the server ended: "server still running" (no crash), or its signal
with the end of its output (Python's faulthandler is on, so a segfault shows every thread's
stack). --pure hides charset-normalizer's compiled modules (cd, md) from the server, which then
runs the package's pure-Python code: the control.

Which build is installed: `python -c "import charset_normalizer, charset_normalizer.md as m;
print(charset_normalizer.__version__, m.__file__)"`. The last line is
`RESULT crashed=0|1 requests=N seconds=S pure=0|1`.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

SERVER = r"""
import faulthandler, os, sys
faulthandler.enable()
if os.environ.get("REPRO_PURE") == "1":
    # charset_normalizer's md and cd from their .py files, not the compiled modules beside them.
    import importlib.util

    class PurePython:
        @staticmethod
        def find_spec(name, path=None, target=None):
            if name in ("charset_normalizer.md", "charset_normalizer.cd"):
                for folder in path or []:
                    source = os.path.join(folder, name.rpartition(".")[2] + ".py")
                    if os.path.exists(source):
                        return importlib.util.spec_from_file_location(name, source)
            return None

    sys.meta_path.insert(0, PurePython)
import requests
import charset_normalizer.md
print("charset_normalizer.md from", charset_normalizer.md.__file__, flush=True)
import waitress


class Row:
    def __init__(self, i):
        self.id, self.name, self.email = i, f"Rider {i}", f"rider{i}@example.org"
        self.extra = {"bike": "single", "comment": None}


def app(environ, start_response):
    rows = [Row(i) for i in range(4000)]
    body = "\n".join(f"{r.id},{r.name},{r.email}" for r in rows)
    if environ["PATH_INFO"] == "/signup":
        try:
            requests.get("http://127.0.0.1:9/check?first=a&last=b", timeout=1)
        except requests.RequestException:
            pass
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body.encode()]


waitress.serve(app, host="127.0.0.1", port=int(sys.argv[1]), threads=4, _quiet=True)
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def client(port: int, stop: threading.Event, counts: list) -> None:
    n = 0
    while not stop.is_set():
        n += 1
        path = "/signup" if n % 4 == 0 else "/event"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as answer:
                answer.read()
            counts[0] += 1
        except OSError:
            counts[1] += 1
            time.sleep(0.1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=180)
    parser.add_argument("--pure", action="store_true")
    parser.add_argument(
        "--debug-malloc",
        action="store_true",
        help="PYTHONMALLOC=debug in the server: a write past a block is caught at its free",
    )
    args = parser.parse_args()
    port = free_port()
    output = tempfile.NamedTemporaryFile("w+", suffix=".log", delete=False)
    environment = dict(os.environ, REPRO_PURE="1" if args.pure else "0")
    if args.debug_malloc:
        environment["PYTHONMALLOC"] = "debug"
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(port)],
        stdout=output,
        stderr=subprocess.STDOUT,
        env=environment,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline or server.poll() is not None:
                print(open(output.name).read())
                return 2
            time.sleep(0.1)
    stop, counts = threading.Event(), [0, 0]
    clients = [threading.Thread(target=client, args=(port, stop, counts)) for _ in range(8)]
    for thread in clients:
        thread.start()
    started = time.monotonic()
    while time.monotonic() - started < args.seconds and server.poll() is None:
        time.sleep(0.5)
    stop.set()
    for thread in clients:
        thread.join(60)
    seconds = time.monotonic() - started
    crashed = server.poll() is not None
    if crashed:
        code = server.returncode
        how = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit status {code}"
        print(f"server ended after {seconds:.0f} s: {how}")
        print(open(output.name).read()[-6000:])
    else:
        print(f"server still running after {seconds:.0f} s")
        server.terminate()
        server.wait(30)
    os.unlink(output.name)
    print(
        f"RESULT crashed={int(crashed)} requests={counts[0]} seconds={seconds:.0f} "
        f"pure={int(args.pure)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
