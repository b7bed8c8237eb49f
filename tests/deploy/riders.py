"""A rider's browser and a looping client on the production domain, for the promotion tests."""

import re
import sqlite3
import threading
import time

import requests

from tests.conftest import wait_until  # noqa: F401  (the deploy tests import it from here)

PRODUCTION = "randopony.localhost"
STAGING = "staging.randopony.localhost"


class Rider:
    """A browser on the production domain: reads pages, signs up with fresh addresses."""

    def __init__(self, host, domain=PRODUCTION):
        self.host = host
        self.browser = requests.Session()
        self.headers = {"Host": f"{domain}:{host.router_port}"}

    def get(self, path):
        return self.browser.get(
            self.host.url(path), headers=self.headers, timeout=60, allow_redirects=False
        )

    def event(self):
        page = self.get("/brevets/")
        found = re.search(r'href="http://[^"/]+(/brevets/LM/200/[^"]+)"', page.text)
        assert found, f"no LM200 event on /brevets/ ({page.status_code}): {page.text[:500]}"
        return found.group(1)

    def sign_up(self, event, email):
        form = self.get(event + "/entry")
        token = re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)
        return self.browser.post(
            self.host.url(event + "/entry"),
            headers=self.headers,
            data={
                "csrf_token": token,
                "email": email,
                "first_name": "Loop",
                "last_name": email.split("@")[0],
                "bike_type": "single",
            },
            timeout=60,
            allow_redirects=False,
        )

    def log_in(self, email, password):
        """A wrangler's login at /admin/login; the session cookie stays in this browser."""
        form = self.get("/admin/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)
        return self.browser.post(
            self.host.url("/admin/login"),
            headers=self.headers,
            data={"csrf_token": token, "email": email, "password": password},
            timeout=60,
            allow_redirects=False,
        )


class LoopingClient(threading.Thread):
    """GETs and (unless reads_only) sign-up POSTs in a loop until stopped; counts every
    failure."""

    def __init__(self, host, event, prefix, reads_only=False, pause=0.0, domain=PRODUCTION):
        super().__init__(daemon=True)
        self.rider, self.event, self.prefix = Rider(host, domain), event, prefix
        self.reads_only, self.pause = reads_only, pause
        self.stop = threading.Event()
        self.failures, self.signed_up, self.requests = [], [], 0

    def run(self):
        n = 0
        while not self.stop.is_set():
            n += 1
            email = f"{self.prefix}{n}@example.org"
            try:
                page = self.rider.get(self.event)
                if self.reads_only:
                    self.requests += 1
                    if page.status_code != 200:
                        self.failures.append(("GET", page.status_code))
                    time.sleep(max(self.pause, 0.05))
                    continue
                answer = self.rider.sign_up(self.event, email)
                self.requests += 3
                if page.status_code != 200:
                    self.failures.append(("GET", page.status_code))
                if answer.status_code == 302:
                    self.signed_up.append(email)
                else:
                    self.failures.append(("POST", answer.status_code, email, said(answer.text)))
                time.sleep(self.pause)
            except requests.RequestException as error:
                self.failures.append(("error", str(error)))


def said(page: str) -> str:
    """What a page says went wrong: its heading and any error or reason lines."""
    lines = re.findall(r"<h1>([^<]+)</h1>|<p[^>]*>([^<]+)</p>", page)
    return " / ".join(next(part for part in line if part) for line in lines)[:500]


def held_writes_only(failures) -> bool:
    """Every failure was a write the router held too long (503, to be sent again): what a
    rider sees while a crashed promotion waits to be resumed; nothing was half done."""
    return all(f[0] == "POST" and f[1] == 503 and "are held" in f[3] for f in failures)


def riders_in(path):
    with sqlite3.connect(path) as db:
        return [row[0] for row in db.execute("SELECT email FROM brevet_riders")]
