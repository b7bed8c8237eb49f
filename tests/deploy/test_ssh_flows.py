"""A real server over SSH: sync_staging, promote_staging_to_production, rollback_production and
cleanup_releases run against a host reached only through a real sshd on a loopback port (the
panel through an SSH tunnel, files with rsync over ssh), and checked as a user checks them:
through the router, on the host's disk and on the panel.

In order, on one host for the module: production 2026r1 with riders and staging 2026r2 (set up
locally; deploying staging over SSH is tests/deploy/test_staging_ssh.py's), then over SSH: staging
refreshed from production, sanitised; 2026r2 promoted; rolled back to 2026r1 with the sign-ups
made on 2026r2; 2026r2, rolled back and marked bad, cleaned up."""

import re

import pytest

from deploy.remote.panel_client import HostingAPI
from tests.deploy.conftest import HOSTING_PASSWORD
from tests.deploy.riders import PRODUCTION, STAGING, Rider, riders_in

R1, R2 = "webapps/randopony2026r1", "webapps/randopony2026r2"
SINK = "@sink.invalid"


def releases(staging, production):
    return dict(RANDOPONY_STAGING_RELEASE=staging, RANDOPONY_PRODUCTION_RELEASE=production)


def sign_up(host, email, domain=PRODUCTION):
    rider = Rider(host, domain)
    answer = rider.sign_up(rider.event(), email)
    assert answer.status_code == 302, answer.text[:500]


def riders_shown(host, domain=PRODUCTION):
    """The names on the LM200's page, as a rider reads them ("Loop <name>" for these tests)."""
    rider = Rider(host, domain)
    page = rider.get(rider.event())
    assert page.status_code == 200, page.text[:500]
    return re.findall(r"<li>Loop ([^<\s]+)", page.text)


def serving(host, domain=PRODUCTION):
    answer = Rider(host, domain).get("/up")
    assert answer.status_code == 200, answer.text[:300]
    return answer.json()["release"]


@pytest.fixture(scope="module")
def host(local_host, ssh_server):
    """Production 2026r1 with a rider, staging 2026r2 with one of its own; `over_ssh` is the
    environment that makes `fab` reach this host through the SSH server."""
    local_host.fab("init_staging", **releases("2026r1", ""))
    local_host.fab("promote_staging_to_production", "--yes", "--demo", **releases("2026r1", ""))
    sign_up(local_host, "ssh.rider1@gmail.com")
    local_host.fab("init_staging", **releases("2026r2", "2026r1"))
    sign_up(local_host, "only.on.staging@example.org", STAGING)
    local_host.over_ssh = dict(
        RANDOPONY_SSH_HOST=ssh_server.host_spec,
        RANDOPONY_SSH_KEY=ssh_server.key_filename,
        RANDOPONY_SSH_KNOWN_HOSTS=ssh_server.known_hosts,
    )
    return local_host


def fab(host, *args, **env):
    return host.fab(*args, **host.over_ssh, **env)


def test_sync_staging_over_ssh_puts_sanitised_production_data_on_staging(host):
    assert "only.on.staging" in riders_shown(host, STAGING)
    done = fab(host, "sync_staging", **releases("2026r2", "2026r1"))
    assert "Staging 2026r2 now holds production 2026r1's data, sanitised" in done.stdout
    assert "Rows copied per table" in done.stdout

    # Staging shows production's riders, not its own any more; production is as it was.
    assert riders_shown(host, STAGING) == riders_shown(host) == ["ssh.rider1"]
    assert serving(host, STAGING) == "2026r2" and serving(host) == "2026r1"
    # No rider's real address reached staging's database.
    staging_riders = riders_in(host.root / R2 / "RandoPony-staging.sqlite")
    assert staging_riders and all(email.endswith(SINK) for email in staging_riders)
    assert "ssh.rider1@gmail.com" in riders_in(host.root / R1 / "RandoPony-production.sqlite")


def test_promote_over_ssh_puts_staging_in_production_with_its_data(host):
    sign_up(host, "ssh.rider2@gmail.com")
    done = fab(host, "promote_staging_to_production", "--yes", **releases("2026r2", "2026r1"))
    assert "Production is 2026r2" in done.stdout and "(previous: 2026r1)" in done.stdout
    # The cutover agent ran over the SSH connection: it held reads since the precopy, so the hold
    # copied only the WAL; the new app waited in standby.
    assert "RandoPony-production.sqlite: consistent copy (wal)" in done.stdout, done.stdout
    assert "out of standby" in done.stdout
    assert serving(host) == "2026r2"
    assert riders_shown(host) == ["ssh.rider1", "ssh.rider2"]  # production's, not staging's
    sign_up(host, "on.r2@gmail.com")
    assert "on.r2@gmail.com" in riders_in(host.root / R2 / "RandoPony-production.sqlite")


def test_rollback_over_ssh_brings_the_old_release_back_with_every_registration(host):
    done = fab(host, "rollback_production", "--yes", **releases("2026r3", "2026r2"))
    assert "Production is 2026r1 again" in done.stdout and "2026r2 is marked bad" in done.stdout
    assert "RandoPony-production.sqlite: consistent copy (wal)" in done.stdout, done.stdout
    assert "no alembic run" in done.stdout  # the two releases share their schema
    assert serving(host) == "2026r1"
    assert riders_shown(host) == ["on.r2", "ssh.rider1", "ssh.rider2"]
    stored = riders_in(host.root / R1 / "RandoPony-production.sqlite")
    for email in ("ssh.rider1@gmail.com", "ssh.rider2@gmail.com", "on.r2@gmail.com"):
        assert stored.count(email) == 1, email
    table = fab(host, "releases", **releases("2026r3", "2026r1")).stdout
    assert re.search(r"2026r1\s*│\s*production\s*│", table), table
    assert re.search(r"2026r2\s*│\s*bad\s*│", table), table
    sign_up(host, "after.rollback@gmail.com")
    assert "after.rollback" in riders_shown(host)


def test_cleanup_over_ssh_removes_the_bad_release_and_its_panel_app(host):
    api = HostingAPI(f"http://127.0.0.1:{host.panel_port}/")
    api.login("randopony", HOSTING_PASSWORD)
    assert "randopony2026r2" in {app.name for app in api.list_apps()}

    done = fab(host, "cleanup_releases", "--keep=0", "--yes", **releases("2026r3", "2026r1"))
    assert "stays  2026r1: production" in done.stdout
    assert "Removed 1 release(s) (2026r2)" in done.stdout
    assert not (host.root / R2).exists()
    assert (host.root / R1 / "RandoPony-production.sqlite").exists()
    assert "randopony2026r2" not in {app.name for app in api.list_apps()}
    assert "randopony2026r2" not in {site.name for site in api.list_websites()}
    assert "randopony2026r1" in {site.name for site in api.list_websites()}
    assert "2026r2" not in fab(host, "releases", **releases("2026r3", "2026r1")).stdout
    assert serving(host) == "2026r1"
    assert riders_shown(host) == ["after.rollback", "on.r2", "ssh.rider1", "ssh.rider2"]
