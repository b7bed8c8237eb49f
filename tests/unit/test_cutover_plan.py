"""The cutover plan's estimate model and its table, on plain data and a host folder (no services
running): fast."""

import json
import re

import pytest

from deploy.flows import cutover_plan as cp
from deploy.flows import promote
from deploy.remote.hosts import LocalHost
from deploy.remote.target import Target

MB = 1_000_000


def run(event="promote", sizes=None, **steps):
    """A history event as releases.log records it."""
    return {"event": event, "time": "2026-11-21T20:15:59+00:00", "release": "2026r2",
            "steps": steps, **({"sizes": sizes} if sizes is not None else {})}  # fmt: skip


def test_without_history_a_step_takes_its_fixed_time_plus_its_bytes_over_a_throughput():
    fixed, rate = cp.DEFAULTS["precopy_databases"]
    found = cp.estimate("precopy_databases", "promote", {"databases": 500 * MB}, [])
    assert found == cp.Estimate(round(fixed + 500 * MB / rate, 2), 0)
    assert cp.estimate("stop_staging", "promote", {}, []).seconds == cp.DEFAULTS["stop_staging"][0]
    # A rollback step that runs a promotion step's code shares its model.
    assert cp.expected("copy_back", 10 * MB) == cp.expected("copy_databases", 10 * MB)
    assert cp.size_kind("copy_files_back") == "files" and cp.size_kind("migrate_down") is None


def test_with_history_the_median_of_the_last_five_runs_of_that_kind():
    history = [run(stop_old_worker=s) for s in (9.0, 1.0, 2.0, 3.0, 4.0, 5.0)]
    history.append(run("rollback", stop_old_worker=50.0))  # another kind of run
    found = cp.estimate("stop_old_worker", "promote", {}, history)
    assert found == cp.Estimate(3.0, 5)  # 9.0 is older than the last five


def test_until_three_runs_are_recorded_the_default_counts_as_one_more():
    default = cp.DEFAULTS["stop_old_worker"][0]
    found = cp.estimate("stop_old_worker", "promote", {}, [run(stop_old_worker=4.0)])
    assert found == cp.Estimate(round((4.0 + default) / 2, 2), 1)
    two = [run(stop_old_worker=4.0), run(stop_old_worker=0.2)]
    assert cp.estimate("stop_old_worker", "promote", {}, two).seconds == default  # the middle one
    three = [*two, run(stop_old_worker=3.0)]
    assert cp.estimate("stop_old_worker", "promote", {}, three).seconds == 3.0


def test_a_step_never_run_in_this_direction_learns_from_its_counterpart():
    history = [run(copy_databases=0.4, stop_old_worker=2.0)] * 3
    assert cp.estimate("stop_current_worker", "rollback", {}, history).seconds == 2.0
    assert cp.estimate("copy_back", "rollback", {}, history).runs == 3
    # Same name in both directions: the rollbacks' own runs come first.
    history += [run("rollback", hold_writes=0.3)] * 3 + [run(hold_writes=0.1)] * 3
    assert cp.estimate("hold_writes", "rollback", {}, history).seconds == 0.3
    assert cp.estimate("hold_writes", "promote", {}, history).seconds == 0.1


def test_copies_are_scaled_by_size_through_the_default_model():
    fixed, rate = cp.DEFAULTS["precopy_databases"]
    history = [run(precopy_databases=4.0, sizes={"databases": 1000 * MB})] * 3
    # Big sizes: nearly proportional.
    found = cp.estimate("precopy_databases", "promote", {"databases": 2000 * MB}, history)
    ratio = (fixed + 2000 * MB / rate) / (fixed + 1000 * MB / rate)
    assert found.seconds == pytest.approx(4.0 * ratio, abs=0.01) and 1.6 < ratio < 2
    # Tiny sizes: the fixed part dominates, so doubling a tiny database changes little.
    tiny = [run(precopy_databases=0.9, sizes={"databases": 100_000})] * 3
    found = cp.estimate("precopy_databases", "promote", {"databases": 200_000}, tiny)
    assert found.seconds == pytest.approx(0.9, abs=0.01)
    # A step that does not grow with the data is not scaled.
    history = [run(migrate_database=1.2, sizes={"databases": MB})] * 3
    assert (
        cp.estimate("migrate_database", "promote", {"databases": 900 * MB}, history).seconds == 1.2
    )


def test_runs_recorded_before_sizes_were_scale_by_their_copied_bytes_or_not_at_all():
    old = [{**run(copy_databases=1.0, copy_files=0.2), "copied_bytes": 1000 * MB}] * 3
    found = cp.estimate("copy_databases", "promote", {"databases": 3000 * MB}, old)
    assert found.seconds > 2.0
    assert cp.estimate("copy_files", "promote", {"files": 500 * MB}, old).seconds == 0.2


NAMES = [step.name for step in promote.STEPS if step.name != "init_production_db"]


def test_the_hold_runs_from_hold_writes_to_the_step_that_lets_writes_go():
    under = cp.held(NAMES)
    assert under == {
        "hold_writes",
        "copy_databases",
        "copy_files",
        "migrate_database",
        "start_new_release",
        "switch_domain",
    }
    undo = ["stop_unpromoted_release", "restart_previous_worker", "release_writes", "record"]
    assert cp.held(undo) == set()
    assert cp.held(undo, holding=True) == set(undo[:3])  # a killed run's hold, still on


def journal(*lines):
    return "\n".join(json.dumps(line) for line in lines) + "\n"


def entry(step, state, time="2026-11-21T20:16:00+00:00", task="promote", release="2026r3"):
    return {"time": time, "task": task, "release": release, "step": step, "state": state}


def test_the_journal_says_which_step_is_running_or_failed():
    text = journal(entry("stop_staging", "started"), entry("stop_staging", "done"))
    assert cp.running_step(text, "promote", "2026r3") is None  # stopped at a boundary
    text += journal(entry("prepare_release", "started"))
    assert cp.running_step(text, "promote", "2026r3") == ("prepare_release", "running")
    assert cp.running_step(text, "promote", "2026r4") is None
    assert cp.running_step(text, "rollback", "2026r3") is None
    failed = text + journal(entry("prepare_release", "failed")) + "not json\n"
    assert cp.running_step(failed, "promote", "2026r3") == ("prepare_release", "failed")
    # A line from before the run last saved its state is an earlier run's.
    assert cp.running_step(failed, "promote", "2026r3", since="2026-11-21T21:00:00+00:00") is None


def test_the_plan_is_a_numbered_checklist_with_estimates_and_the_hold():
    estimated = {name: 1.0 for name in NAMES}
    sizes = {"databases": 3 * MB, "files": 2 * MB}
    table = cp.rows([(name, f"touches {name}") for name in NAMES], estimated, sizes=sizes)
    lines = cp.render(table)
    assert lines[0].split()[:5] == ["#", "step", "state", "estimate", "measured"]
    body = lines[1:-1]
    assert len(body) == len(NAMES)
    for number, (line, name) in enumerate(zip(body, NAMES, strict=True), 1):
        assert re.match(rf"\s+{number}\. {name}\s+pending\s+1\.0 s\s", line), line
    hold = body[NAMES.index("hold_writes")]
    assert " held " in hold and " held " not in body[NAMES.index("precopy_databases")]
    assert "touches copy_databases [3.0 MB]" in body[NAMES.index("copy_databases")]
    assert "touches precopy_files [2.0 MB]" in body[NAMES.index("precopy_files")]
    assert cp.megabytes(4500) == "4 kB" and cp.megabytes(2_500_000_000) == "2.50 GB"
    assert lines[-1] == f"  Estimated: {len(NAMES)}.0 s in all; writes held about 6.0 s."


def test_during_a_run_the_table_shows_done_running_and_pending():
    names = ["stop_staging", "prepare_release", "precopy_files", "hold_writes", "switch_domain"]
    table = cp.rows(
        [(name, "") for name in names],
        dict.fromkeys(names, 2.0),
        done=names[:2],
        durations={"stop_staging": 1.25, "prepare_release": 0.5},
        current=("precopy_files", "running"),
    )
    assert [row.state for row in table] == ["done", "done", "running", "pending", "pending"]
    assert [row.measured for row in table] == [1.25, 0.5, None, None, None]
    lines = cp.render(table)
    assert re.search(r"1\. stop_staging\s+done\s+2\.0 s\s+1\.2 s", lines[1])
    assert lines[-1] == (
        "  Done 2 of 5 steps in 1.8 s (estimated 4.0 s); about 6.0 s to go; "
        "writes held about 4.0 s."
    )
    finished = cp.rows(
        [(name, "") for name in names],
        dict.fromkeys(names, 2.0),
        done=names,
        durations=dict.fromkeys(names, 3.0),
    )
    assert cp.render(finished, hold_seconds=5.5)[-1] == (
        "  Took 15.0 s in all (estimated 10.0 s); writes held 5.5 s (estimated 4.0 s)."
    )


def test_durations_of_a_minute_and_more_read_in_minutes():
    assert cp.duration(0.04) == "0.0 s" and cp.duration(59.5) == "59.5 s"
    assert cp.duration(90) == "1.5 min" and cp.duration(None) == ""


def test_the_last_run_in_the_history_measured_against_its_plan():
    history = [
        run(stop_staging=1.0, hold_writes=0.1, switch_domain=0.2),
        {"event": "cleanup_releases", "time": "later"},
    ]
    history[0].update(write_hold_seconds=0.4, estimates={"stop_staging": 2.0})
    lines = cp.last_run(history, {"promote": {"stop_staging": "stops staging"}})
    assert lines[0].startswith("Last run: promote of 2026r2")
    assert re.search(r"1\. stop_staging\s+done\s+2\.0 s\s+1\.0 s\s+stops staging", lines[2])
    assert lines[-1].startswith("  Took 1.3 s in all (estimated 2.0 s); writes held 0.4 s")
    del history[0]["estimates"]  # recorded before there were plans
    assert cp.last_run(history, {})[-1] == "  Took 1.3 s in all; writes held 0.4 s."
    assert cp.last_run(history[1:], {}) == []


def test_the_legend_says_which_estimates_have_no_run_behind_them():
    some = {"a": cp.Estimate(1.0, 3), "b": cp.Estimate(1.0, 0)}
    assert "no run yet of b" in cp.legend(some)
    assert "no run on this host yet" in cp.legend({"b": cp.Estimate(1.0, 0)})
    assert "medians of the last runs" in cp.legend({"a": cp.Estimate(1.0, 3)})


# On a host folder: the sizes measured, and promote.plan() as the fabfile prints it.


def host_with_releases(tmp_path, history=()):
    old = tmp_path / "webapps/randopony2026r1"
    (old / "rider_lists/sub").mkdir(parents=True)
    (old / "RandoPony-production.sqlite").write_bytes(b"x" * 3000)
    (old / "RandoPony-production.sqlite-wal").write_bytes(b"x" * 500)
    (old / "RandoPony-production.sqlite-shm").write_bytes(b"x" * 32768)  # not copied
    (old / "celery.sqlite").write_bytes(b"x" * 1000)
    (old / "rider_lists/a.csv").write_bytes(b"x" * 200)
    (old / "rider_lists/sub/b.xlsx").write_bytes(b"x" * 100)
    (tmp_path / "webapps/randopony2026r2").mkdir()
    (tmp_path / "deploy").mkdir()
    lines = "".join(json.dumps(event) + "\n" for event in history)
    (tmp_path / "deploy/releases.log").write_text(lines)
    return LocalHost(tmp_path)


def test_sizes_are_measured_on_the_host(tmp_path):
    host = host_with_releases(tmp_path)
    sizes = cp.measure(host, host.root / "webapps/randopony2026r1", promote.DB_NAMES, "rider_lists")
    assert sizes == {
        "database": 3000,
        "database_wal": 500,
        "queue": 1000,
        "queue_wal": 0,
        "databases": 4500,
        "files": 300,
        "file_count": 2,
    }
    empty = cp.measure(host, host.root / "webapps/randopony2026r2", promote.DB_NAMES, "rider_lists")
    assert empty["databases"] == 0 and empty["files"] == 0 and empty["file_count"] == 0


def a_promotion(tmp_path, history=(), **kind):
    host = host_with_releases(tmp_path, history)
    target = Target(staging_release="2026r2", production_release="2026r1", echo=lambda _: None)
    return promote.Promotion(target, host, None, "2026r2", "2026r1", **kind)


def test_the_promotion_plan_lists_every_step_with_an_estimate_and_the_totals(tmp_path):
    history = [run(stop_staging=1.4, start_new_release=3.3)]
    p = a_promotion(tmp_path, history)
    lines = promote.plan(p)
    assert lines[0].startswith("Promote randopony2026r2 to production")
    assert "database 3 kB (-wal 0 kB)" in lines[1] and "0 kB in 2 file(s)" in lines[1]
    steps = [re.match(r"\s+\d+\. (\w+)\s+pending\s+\d", line) for line in lines[3:-2]]
    assert [m.group(1) for m in steps if m] == NAMES
    # One run each so far: halfway between it and the default.
    assert p.estimates["stop_staging"] == round((1.4 + cp.expected("stop_staging")) / 2, 2)
    assert p.estimates["start_new_release"] == round(
        (3.3 + cp.expected("start_new_release")) / 2, 2
    )
    assert lines[-2].startswith("  Estimated: ") and "writes held about" in lines[-2]
    assert "no run yet of prepare_release, start_standby, precopy_databases" in lines[-1]


def test_the_rollback_plan_has_estimates_too(tmp_path):
    history = [run(copy_databases=0.6, stop_old_worker=1.1), run("rollback", migrate_down=2.2)]
    p = a_promotion(tmp_path, history * 3, kind="rollback")
    lines = promote.plan(p)
    assert lines[0].startswith("Roll production back from randopony2026r1 to randopony2026r2")
    assert p.estimates["migrate_down"] == 2.2 and p.estimates["stop_current_worker"] == 1.1
    assert re.search(r"\d+\. copy_files_back\s+pending\s+\d.*held", "\n".join(lines))


def test_a_run_under_way_shows_where_it_is(tmp_path):
    p = a_promotion(tmp_path)
    p.done = ["stop_staging", "prepare_release", "start_standby"]
    p.durations = {"stop_staging": 1.0, "prepare_release": 0.2, "start_standby": 2.0}
    promote.estimate(p)
    p.save()
    state = json.loads((tmp_path / "deploy/promotion.json").read_text())
    started = entry("precopy_databases", "started", time=state["updated"], release="2026r2")
    (tmp_path / "deploy/journal.log").write_text(journal(started))
    lines = promote.progress(promote._saved(p.target, p.host, None, state), state)
    assert "Under way, or interrupted" in lines[1] and "no lock held" in lines[1]
    text = "\n".join(lines)
    assert re.search(r"1\. stop_staging\s+done\s+[\d.]+ s\s+1\.0 s", text)
    assert re.search(r"4\. precopy_databases\s+running\s", text)
    assert re.search(r"5\. precopy_files\s+pending\s", text)
    assert "Done 3 of" in lines[-2]
