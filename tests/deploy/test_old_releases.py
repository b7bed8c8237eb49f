"""A release installed before deploy/ was split into host/, remote/ and flows/ is still driven by
today's code: started, stopped, promoted, copied from, rolled back to, and brought back after a
restart. Such a release has no console scripts (randopony-release, randopony-db-copy), only the
old module paths, and the code that drives it must find them.

The release is the project as it stood at the commit before the split
(tests/deploy/releases/before-the-split.tar.xz, made with `git archive`), installed by its own
fabfile, as a host that ran that version has it."""

import re
import subprocess
import sys
import tarfile

import pytest

from deploy.host import supervisor
from tests.conftest import ROOT
from tests.deploy.conftest import BIN
from tests.deploy.riders import Rider, riders_in

OLD_PROJECT = ROOT / "tests" / "deploy" / "releases" / "before-the-split.tar.xz"
R1, R2 = "webapps/randopony2026r1", "webapps/randopony2026r2"


def releases(staging, production):
    return dict(RANDOPONY_STAGING_RELEASE=staging, RANDOPONY_PRODUCTION_RELEASE=production)


@pytest.fixture(scope="module")
def old_checkout(tmp_path_factory):
    folder = tmp_path_factory.mktemp("before-the-split")
    with tarfile.open(OLD_PROJECT) as archive:
        archive.extractall(folder, filter="data")
    return folder


def old_fab(host, checkout, *args, **extra_env):
    """`fab` as a maintainer ran it before the split: the old checkout's fabfile, which imports
    the old checkout's deploy package (fab puts the fabfile's folder first on the path)."""
    env = {**host.env, "RANDOPONY_CHECKOUT": str(checkout), **extra_env}
    done = subprocess.run(
        [str(BIN / "fab"), *args],
        cwd=checkout,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, f"old fab {args} failed:\n{done.stdout}\n{done.stderr}"
    return done


def app_pids(directory):
    programs = supervisor.programs(directory / "supervisor.sock")
    return {p.pid for p in programs if p.name.startswith("app")}


def serving(host):
    return Rider(host).get("/up").json()["release"]


@pytest.fixture(scope="module")
def old_production(local_host, old_checkout):
    """2026r1 installed by the old code, then promoted to production by today's."""
    old_fab(local_host, old_checkout, "init_staging", **releases("2026r1", ""))
    env_bin = local_host.root / R1 / "env" / "bin"
    assert (env_bin / "python").exists()
    assert not (env_bin / "randopony-release").exists(), "not a release from before the split"
    assert "deploy.release_runtime" in (local_host.root / R1 / "bin" / "start").read_text()
    done = local_host.fab(
        "promote_staging_to_production", "--yes", "--demo", **releases("2026r1", "")
    )
    assert "Production is 2026r1" in done.stdout
    local_host.event = Rider(local_host).event()
    return local_host


def test_todays_code_promotes_a_release_installed_before_the_split(old_production):
    assert serving(old_production) == "2026r1"
    rider = Rider(old_production)
    assert rider.sign_up(old_production.event, "on-old-r1@example.org").status_code == 302


def test_todays_code_restarts_and_shows_an_old_release(old_production):
    before = app_pids(old_production.root / R1)
    old_production.fab("restart_app", "--release=production", **releases("2026r2", "2026r1"))
    assert app_pids(old_production.root / R1).isdisjoint(before)
    assert serving(old_production) == "2026r1"
    table = old_production.fab("ps", **releases("2026r2", "2026r1")).stdout
    assert re.search(r"2026r1\s*│\s*production\s*│.*app 2/2 running, celery running", table), table


def test_a_new_release_takes_over_from_an_old_one_and_gives_it_back(old_production):
    """The old release is the one copied from (by the new release's copier), stopped, and then,
    on rollback, copied back into and started again: every registration is kept."""
    old_production.fab("init_staging", **releases("2026r2", "2026r1"))
    assert (old_production.root / R2 / "env" / "bin" / "randopony-release").exists()
    promoted = old_production.fab(
        "promote_staging_to_production", "--yes", **releases("2026r2", "2026r1")
    )
    assert "Production is 2026r2" in promoted.stdout
    assert serving(old_production) == "2026r2"
    rider = Rider(old_production)
    assert rider.sign_up(old_production.event, "on-new-r2@example.org").status_code == 302

    back = old_production.fab("rollback_production", "--yes", **releases("2026r3", "2026r2"))
    assert "Production is 2026r1 again" in back.stdout
    assert serving(old_production) == "2026r1"
    stored = riders_in(old_production.root / R1 / "RandoPony-production.sqlite")
    for email in ("on-old-r1@example.org", "on-new-r2@example.org"):
        assert stored.count(email) == 1, email


def test_a_restarted_host_brings_an_old_release_back(old_production):
    old_production.restart()
    assert serving(old_production) == "2026r1"
    assert (
        "production 2026r1 answers /up"
        in (old_production.root / "logs/host/releases.log").read_text()
    )


@pytest.mark.parametrize(
    "module",
    [
        "deploy.release_runtime",
        "deploy.db_copy",
        "deploy.schedule",
        "deploy.hosting",
        "deploy.host_boot",
    ],
)
def test_the_old_module_paths_still_run_todays_programs(module):
    """Conf files and crontab scripts written before the split run programs by these paths."""
    done = subprocess.run(
        [sys.executable, "-m", module, "--help"], capture_output=True, text=True, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: randopony-"), done.stdout
