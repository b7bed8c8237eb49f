"""`make run` for the site alone: a development database with demo events, the site, a celery
worker and an SMTP sink that prints every mail, all stopped together with Ctrl-C."""

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VAR = ROOT / "var" / "dev"
BIN = Path(sys.executable).parent
DEV_WRANGLER = ("admin@example.com", "randopony-dev")


def ini_for_var() -> Path:
    """development.ini with its files under var/dev, so the checkout stays clean."""
    VAR.mkdir(parents=True, exist_ok=True)
    ini = VAR / "development.ini"
    text = (ROOT / "development.ini").read_text()
    text = text.replace("%(here)s/alembic", str(ROOT / "alembic"))
    ini.write_text(text)
    return ini


def wait_for(url: str, seconds: float = 30) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return True
        except OSError:  # refused, or /up's 503 while the database is being made
            pass
        time.sleep(0.2)
    return False


def main() -> int:
    ini = ini_for_var()
    env = dict(os.environ, RANDOPONY_WRANGLER_PASSWORD=DEV_WRANGLER[1])
    subprocess.run(
        [BIN / "initialize_RandoPony_db", ini, "--demo", "--wrangler-email", DEV_WRANGLER[0]],
        env=env,
        check=True,
    )
    processes = [
        subprocess.Popen(
            [BIN / "randopony_smtp_sink", "--port", "8025", "--maildir", VAR / "mail"]
        ),
        subprocess.Popen([BIN / "randopony_worker", ini, "--concurrency", "1"]),
        subprocess.Popen([BIN / "pserve", ini]),
    ]
    try:
        if wait_for("http://127.0.0.1:6543/up"):
            print(
                "\nRandoPony is running: open http://127.0.0.1:6543/\n"
                "Admin: http://127.0.0.1:6543/admin/login "
                f"({DEV_WRANGLER[0]} / {DEV_WRANGLER[1]})\n"
                "Mail sent by the site is printed below. Ctrl-C stops everything.\n",
                flush=True,
            )
        while all(p.poll() is None for p in processes):
            time.sleep(0.5)
        print("a process stopped; stopping the others", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        for p in processes:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in processes:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()


if __name__ == "__main__":
    sys.exit(main())
