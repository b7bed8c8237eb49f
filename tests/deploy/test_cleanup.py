"""`fab cleanup_releases`: old releases go with their apps and websites; production, the rollback
target and staging never do. First the choice on its own, then on a real local host with two
promotions behind it, a running abandoned staging release and two releases that were never
installed."""

import json
import re
import socket

import pytest
import requests

from deploy.cleanup import Release, amount, choose, cleanup_releases, keep_count
from deploy.hosting_api import HostingAPI
from deploy.target import Target, TargetError
from tests.deploy.conftest import HOSTING_PASSWORD

PRODUCTION = "randopony.localhost"
# After the fixture: what the fabfile says (the host agrees).
NOW = dict(RANDOPONY_PRODUCTION_RELEASE="2026r2", RANDOPONY_STAGING_RELEASE="2026r4")


def release(name, age):
    return Release(name, None, float(age), False, f"age {age}")


# The choice


@pytest.mark.parametrize("value", ["-1", "two", "1.5", "", " ", None, True, -3, "1e3"])
def test_keep_must_be_a_whole_number(value):
    with pytest.raises(TargetError, match="whole number"):
        keep_count(value)


@pytest.mark.parametrize("value, count", [("0", 0), (0, 0), ("3", 3), (12, 12), (" 2 ", 2)])
def test_keep_as_it_comes(value, count):
    assert keep_count(value) == count


def test_a_bad_keep_is_refused_before_the_host_is_touched():
    target = Target(host_root="/nonexistent/host/root")
    with pytest.raises(TargetError, match="whole number"):
        cleanup_releases(target, keep="-1", yes=True)


def test_choice_keeps_roles_and_the_newest_others():
    releases = [release(n, age) for n, age in [("r1", 1), ("r2", 2), ("r3", 3), ("r4", 4)]]
    releases += [release("r5", 5), release("r6", 6)]
    roles = {"production": "r2", "previous": "r1", "staging": "r6", "bad": []}
    plan = choose(releases, roles, keep=1)
    assert plan.stay["r2"] == "production"
    assert plan.stay["r1"] == "rollback target"
    assert plan.stay["r6"] == "staging"
    assert plan.stay["r5"].startswith("kept newest (1 of 1)")
    assert plan.remove == ["r3", "r4"]  # oldest first
    assert choose(releases, roles, keep=0).remove == ["r3", "r4", "r5"]
    assert choose(releases, roles, keep=5).remove == []


def test_a_bad_previous_release_is_no_rollback_target():
    releases = [release("r1", 1), release("r2", 2), release("r3", 3)]
    roles = {"production": "r1", "previous": "r2", "staging": None, "bad": ["r2"]}
    assert choose(releases, roles, keep=0).remove == ["r2", "r3"]
    assert choose(releases, roles, keep=1).remove == ["r2"]  # r3 is newer


def test_order_is_by_age_not_by_name_and_protected_releases_stay():
    releases = [release("2026r9", 1), release("2026r1", 5), release("2025r1", 3)]
    roles = {"production": None, "previous": None, "staging": None}
    assert choose(releases, roles, keep=1).remove == ["2026r9", "2025r1"]
    plan = choose(releases, roles, keep=0, protected={"2025r1": "the fabfile's staging_release"})
    assert plan.remove == ["2026r9", "2026r1"]
    assert plan.stay == {"2025r1": "the fabfile's staging_release"}


def test_sizes_read_as_people_say_them():
    assert [amount(n) for n in (0, 999, 4096, 146_300_000, 2_500_000_000)] == [
        "0 bytes",
        "999 bytes",
        "4.1 kB",
        "146.3 MB",
        "2.5 GB",
    ]


# On a real host


def panel(host):
    api = HostingAPI(f"http://127.0.0.1:{host.panel_port}/")
    api.login("randopony", HOSTING_PASSWORD)
    return api


def webapps(host):
    return sorted(p.name for p in (host.root / "webapps").iterdir())


def history(host):
    text = (host.root / "deploy/releases.log").read_text()
    return [json.loads(line) for line in text.splitlines()]


def answers(port):
    with socket.socket() as s:
        s.settimeout(2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def production_release(host):
    up = requests.get(
        host.url("/up"), headers={"Host": f"{PRODUCTION}:{host.router_port}"}, timeout=30
    )
    assert up.status_code == 200, up.text[:300]
    return up.json()["release"]


@pytest.fixture(scope="module")
def hosted(local_host):
    """Production 2026r2, rollback target 2026r1; 2025r8 and 2025r9 set up on the panel but
    never installed; 2026r3 installed and running but abandoned as staging for 2026r4."""
    h = local_host
    h.fab("init_staging", RANDOPONY_STAGING_RELEASE="2026r1")
    h.fab("promote_staging_to_production", "--yes", "--demo", RANDOPONY_STAGING_RELEASE="2026r1")
    r2 = dict(RANDOPONY_STAGING_RELEASE="2026r2", RANDOPONY_PRODUCTION_RELEASE="2026r1")
    h.fab("init_staging", **r2)
    h.fab("promote_staging_to_production", "--yes", **r2)
    for name in ("2025r8", "2025r9"):
        # Each on its own domain: a domain belongs to one website.
        h.fab(
            "init_staging_app",
            RANDOPONY_STAGING_RELEASE=name,
            RANDOPONY_PRODUCTION_RELEASE="2026r2",
            RANDOPONY_STAGING_DOMAIN=f"old{name[-1]}.randopony.localhost",
        )
    h.fab("init_staging", RANDOPONY_STAGING_RELEASE="2026r3", RANDOPONY_PRODUCTION_RELEASE="2026r2")
    h.fab(
        "init_staging_app",
        RANDOPONY_STAGING_RELEASE="2026r4",
        RANDOPONY_PRODUCTION_RELEASE="2026r2",
        RANDOPONY_STAGING_DOMAIN="next.randopony.localhost",
    )
    roles = json.loads((h.root / "deploy/roles.json").read_text())
    assert (roles["production"], roles["previous"], roles["staging"]) == (
        "2026r2",
        "2026r1",
        "2026r4",
    )
    assert webapps(h) == [
        f"randopony{r}" for r in ("2025r8", "2025r9", "2026r1", "2026r2", "2026r3", "2026r4")
    ]
    return h


def test_a_negative_keep_is_refused_and_nothing_changes(hosted):
    before, events = hosted.tree(), len(history(hosted))
    done = hosted.fab("cleanup_releases", "--keep=-1", "--yes", check=False, **NOW)
    assert done.returncode == 1, done.stdout
    assert "error: --keep must be a whole number" in done.stderr
    assert "Traceback" not in done.stderr
    assert hosted.tree() == before and len(history(hosted)) == events


def test_without_yes_it_asks_and_a_closed_stdin_changes_nothing(hosted):
    before, events = hosted.tree(), len(history(hosted))
    done = hosted.fab("cleanup_releases", "--keep=0", check=False, **NOW)
    assert done.returncode == 1
    assert "error: not confirmed; nothing changed" in done.stderr
    # The plan was shown, with the reason each release stays.
    assert "stays  2026r2: production" in done.stdout
    assert "stays  2026r1: rollback target" in done.stdout
    assert "stays  2026r4: staging" in done.stdout
    for name in ("2025r8", "2025r9", "2026r3"):
        assert f"goes   {name}" in done.stdout
    assert "Remove them?" in done.stdout
    assert hosted.tree() == before and len(history(hosted)) == events
    assert len(webapps(hosted)) == 6
    assert {a.name for a in panel(hosted).list_apps()} >= {"randopony2025r8", "randopony2026r3"}


def test_an_interrupted_promotion_is_finished_first(hosted):
    state = hosted.root / "deploy/promotion.json"
    state.write_text(json.dumps({"new": "2026r3", "old": "2026r2", "done": ["stop_staging"]}))
    try:
        before = hosted.tree()
        done = hosted.fab("cleanup_releases", "--keep=0", "--yes", check=False, **NOW)
        assert done.returncode == 1
        assert "promotion of 2026r3" in done.stderr and "--resume" in done.stderr
        assert "rollback_production" in done.stderr
        assert hosted.tree() == before
    finally:
        state.unlink()


def test_a_held_lock_is_respected(hosted):
    lock = hosted.root / "deploy/lock"
    lock.mkdir()
    (lock / "holder.json").write_text(
        json.dumps({"purpose": "promote", "release": "2026r4", "by": "someone", "since": "now"})
    )
    try:
        before = hosted.tree()
        done = hosted.fab("cleanup_releases", "--keep=0", "--yes", check=False, **NOW)
        assert done.returncode == 1
        assert "holds the host's lock: promote of 2026r4" in done.stderr
        assert hosted.tree() == before
        assert len(webapps(hosted)) == 6
    finally:
        (lock / "holder.json").unlink()
        lock.rmdir()


def test_keep_one_removes_the_older_candidates_with_their_apps_and_websites(hosted):
    r3_port = json.loads((hosted.root / "webapps/randopony2026r3/release.json").read_text())["port"]
    assert answers(r3_port)
    done = hosted.fab("cleanup_releases", "--keep=1", "--yes", **NOW)
    assert "stays  2026r3: kept newest (1 of 1), installed" in done.stdout
    assert "Removed 2 release(s) (2025r8, 2025r9)" in done.stdout
    assert webapps(hosted) == [f"randopony{r}" for r in ("2026r1", "2026r2", "2026r3", "2026r4")]
    api = panel(hosted)
    names = {a.name for a in api.list_apps()} | {w.name for w in api.list_websites()}
    assert not {"randopony2025r8", "randopony2025r9"} & names
    assert {"randopony2026r1", "randopony2026r2", "randopony2026r3"} <= names
    assert answers(r3_port)  # the kept release was not stopped
    event = history(hosted)[-1]
    assert event["event"] == "cleanup_releases"
    assert event["removed"] == ["2025r8", "2025r9"] and event["freed_bytes"] > 0
    assert event["kept"] == ["2026r1", "2026r2", "2026r3", "2026r4"]


def test_keep_zero_stops_and_removes_a_running_release_never_production_or_rollback(hosted):
    r3 = hosted.root / "webapps/randopony2026r3"
    r3_port = json.loads((r3 / "release.json").read_text())["port"]
    assert (r3 / "env/bin/python").exists() and answers(r3_port)
    done = hosted.fab("cleanup_releases", "--keep=0", "--yes", **NOW)
    assert "supervisord stopped" in done.stdout
    assert "website randopony2026r3 deleted" in done.stdout
    assert "Removed 1 release(s) (2026r3)" in done.stdout
    assert re.search(r"✓ 2026r3 removed: [0-9.]+ MB freed \([0-9.]+ s\)", done.stdout)

    assert not r3.exists() and not answers(r3_port)
    assert webapps(hosted) == [f"randopony{r}" for r in ("2026r1", "2026r2", "2026r4")]
    api = panel(hosted)
    assert api.app("randopony2026r3") is None and api.website("randopony2026r3") is None
    for name in ("randopony2026r1", "randopony2026r2", "randopony2026r4"):
        assert api.app(name) is not None and api.website(name) is not None
    # The rollback point is whole, and production serves on.
    assert (hosted.root / "webapps/randopony2026r1/RandoPony-production.sqlite").exists()
    assert (hosted.root / "webapps/randopony2026r1/env/bin/python").exists()
    assert production_release(hosted) == "2026r2"

    event = history(hosted)[-1]
    assert event["event"] == "cleanup_releases" and event["removed"] == ["2026r3"]
    assert event["freed_bytes"] > 1_000_000  # a virtualenv went
    journal = [
        json.loads(line)
        for line in (hosted.root / "deploy/journal.log").read_text().splitlines()
        if '"cleanup_releases"' in line
    ]
    steps = [(j["release"], j["step"], j["state"]) for j in journal if j["release"] == "2026r3"]
    assert steps == [
        ("2026r3", step, state)
        for step in ("stop_supervisor", "delete_website", "delete_app", "remove_directory")
        for state in ("started", "done")
    ]
    assert not (hosted.root / "deploy/lock").exists()


def test_nothing_left_to_remove(hosted):
    before, events = hosted.tree(), len(history(hosted))
    done = hosted.fab("cleanup_releases", "--keep=0", **NOW)  # nothing to ask about
    assert "Nothing to remove." in done.stdout
    assert hosted.tree() == before and len(history(hosted)) == events
    assert production_release(hosted) == "2026r2"
