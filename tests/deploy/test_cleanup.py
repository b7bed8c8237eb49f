"""`fab cleanup_releases`: the choice of what goes, on its own. On a real host, with every kind of
release a history of promotions and rollbacks leaves behind, the command runs at the end of
tests/deploy/test_promote.py, and so do its guards for production, each on its own: the
release the roles say is production (here too), the one the fabfile names (just after a
rollback), any release the production domain's website uses (an old app mounted under it, or
production on a host whose records do not name it), and, at the removal itself, a release
whose website serves the production domain."""

import pytest

from deploy.flows.cleanup import Release, amount, choose, cleanup_releases, keep_count
from deploy.remote.target import Target, TargetError

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
