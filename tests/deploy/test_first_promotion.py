"""A new host's first promotion as a club does it on a real server: without `--demo`.

Staging was initialised with demo events (as init_staging always does); production starts from
a new database of its own with none of them, and with the wrangler the promotion asked for. A
wrangler adds the first event on production and a rider pre-registers for it, mailed as on any
production day. `fab -h` tells a maintainer what `--demo` is for."""

import re
import subprocess
from datetime import date, timedelta

import pytest

from tests.conftest import ROOT
from tests.deploy.conftest import BIN, WRANGLER_PASSWORD
from tests.deploy.riders import STAGING, Rider

PRODUCTION_WRANGLER_PASSWORD = "production-wrangler-1"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def populaire_paths(rider):
    return re.findall(r'href="http://[^"/]+(/populaires/[^"/]+)"', rider.get("/populaires/").text)


def brevet_paths(rider):
    return re.findall(r'href="http://[^"/]+(/brevets/\w+/\d+/\w+)"', rider.get("/brevets/").text)


def post_form(rider, path, fields):
    """A form of the site, sent with the token of the page it is on."""
    token = CSRF.search(rider.get(path).text).group(1)
    return rider.browser.post(
        rider.host.url(path),
        headers=rider.headers,
        data={"csrf_token": token, **fields},
        timeout=60,
        allow_redirects=False,
    )


@pytest.fixture(scope="module")
def production(local_host):
    local_host.fab("init_staging")  # the fixture's host: staging 2026r1, no production yet
    staging = Rider(local_host, STAGING)
    local_host.staging_events = populaire_paths(staging) + brevet_paths(staging)
    local_host.promoted = local_host.fab(
        "promote_staging_to_production",
        "--yes",
        RANDOPONY_WRANGLER_PASSWORD=PRODUCTION_WRANGLER_PASSWORD,
    )
    return local_host


def test_fab_help_explains_demo():
    done = subprocess.run(
        [str(BIN / "fab"), "-h", "promote_staging_to_production"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    said = " ".join(done.stdout.split())
    assert "-d, --demo" in said
    assert "first promotion only: production's new database gets demo events" in said


def test_the_first_promotion_says_what_production_is(production):
    said = production.promoted.stdout
    assert "Production is 2026r1 at http://randopony.localhost" in said
    assert "(previous: none)" in said
    assert "Set production_release = '2026r1'" in said
    assert "init_production_db" in said
    up = Rider(production).get("/up").json()
    assert (up["release"], up["status"]) == ("2026r1", "ok")


def test_the_first_promotion_prints_the_address_browsers_reach(production):
    address = f"http://randopony.localhost:{production.router_port}/"
    assert f"Production is 2026r1 at {address} " in production.promoted.stdout


def test_production_has_none_of_the_demo_events_staging_had(production):
    assert len(production.staging_events) >= 2, "staging was initialised with demo events"
    rider = Rider(production)
    assert populaire_paths(rider) == [] and brevet_paths(rider) == []
    for path in production.staging_events:
        assert "Pre-registered riders" not in rider.get(path).text, path


def test_production_has_the_wrangler_the_promotion_made(production):
    wrangler = Rider(production)
    refused = wrangler.log_in("wrangler@example.com", WRANGLER_PASSWORD)  # staging's password
    assert refused.status_code != 302
    assert wrangler.log_in("wrangler@example.com", PRODUCTION_WRANGLER_PASSWORD).status_code == 302
    assert wrangler.get("/admin/").status_code == 200


def test_the_first_event_added_on_production_takes_sign_ups_and_mails(production, mailbox):
    wrangler = Rider(production)
    assert wrangler.log_in("wrangler@example.com", PRODUCTION_WRANGLER_PASSWORD).status_code == 302
    day = date.today() + timedelta(days=30)
    added = post_form(
        wrangler,
        "/admin/populaires/new",
        {
            "event_name": "First Populaire",
            "short_name": "FirstPop",
            "distance": "50 km",
            "date": day.isoformat(),
            "start_time": "09:00",
            "start_locn": "Jericho Beach",
            "start_map_url": "",
            "organizer_email": "first.organizer@example.org",
            "registration_end_date": "",
            "registration_end_time": "",
            "entry_form_url": "",
        },
    )
    assert added.status_code == 302, added.text[:1000]

    rider = Rider(production)
    assert populaire_paths(rider) == ["/populaires/FirstPop"]
    before = len(mailbox.messages)
    signed_up = post_form(
        rider,
        "/populaires/FirstPop/entry",
        {"email": "first.rider@example.org", "first_name": "Ada", "last_name": "Lovelace"},
    )
    assert signed_up.status_code == 302, signed_up.text[:1000]
    assert "Ada Lovelace" in rider.get("/populaires/FirstPop").text
    messages = mailbox.wait_for(before + 2, timeout=120)
    recipients = {address for rcpt, _, _ in messages[before:] for address in rcpt}
    assert recipients == {"first.rider@example.org", "first.organizer@example.org"}
