"""The one step runner (deploy/flows/steps.py), in-process on a host folder: a run cut off at any
boundary is taken up where it stopped, each step's work done once; a failure names its step;
the journal says what ran. The same runner drives staging, the promotion, the rollback, the
sync and cleanup, whose real kill -9 runs are in tests/deploy."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import pytest

from deploy.flows.release import DeployError
from deploy.flows.steps import Run, Step, StepFailed, run_steps
from deploy.host import layout
from deploy.remote import records
from deploy.remote.hosts import LocalHost
from deploy.remote.target import Target


@dataclass
class Counting(Run):
    """A run whose steps count their work in a file on the host."""

    resumable: bool = True
    broken: str | None = None
    seen: list[str] = field(default_factory=list)

    @property
    def task(self) -> str:
        return "counting"

    @property
    def subject(self) -> str:
        return "2026r1"

    def state_file(self) -> PurePosixPath | None:
        return layout.deploy_dir(self.host.root) / "counting.json" if self.resumable else None

    def state(self) -> dict:
        return {"kind": "counting"}


def work(name):
    def step(run: Counting) -> None:
        if run.broken == name:
            raise DeployError("the disk is full")
        path = run.host.root / "work" / name
        run.host.append_line(path, "done")  # counts how often the work was done

    return step


STEPS = (
    Step("first", "does the first thing", work("first")),
    Step("skipped", "never applies here", work("skipped"), lambda run: False),
    Step("second", "does the second thing", work("second")),
    Step("third", "does the third thing", work("third")),
)
BOUNDARIES = ["start"] + [f"{at}{s}" for s in ("first", "second", "third") for at in ("in:", "")]


@pytest.fixture
def host(tmp_path):
    (tmp_path / "deploy").mkdir()
    (tmp_path / "deploy" / records.TEST_HOST_MARK).write_text("")
    return LocalHost(tmp_path)


def counting(host, **options):
    return Counting(Target(echo=lambda line: None), host, **options)


def times_done(host, name):
    path = Path(host.root) / "work" / name
    return len(path.read_text().splitlines()) if path.exists() else 0


def state_of(host) -> Path:
    return Path(host.root) / "deploy" / "counting.json"


def journal(host):
    lines = (Path(host.root) / "deploy" / "journal.log").read_text().splitlines()
    return [(entry["step"], entry["state"]) for entry in map(json.loads, lines)]


def test_a_run_does_each_applicable_step_once_journals_it_and_leaves_no_state(host):
    run = counting(host)
    run_steps(run, STEPS)
    assert run.done == ["first", "second", "third"]
    assert set(run.durations) == {"first", "second", "third"}
    assert [times_done(host, s) for s in ("first", "skipped", "second", "third")] == [1, 0, 1, 1]
    assert journal(host) == [
        ("first", "started"),
        ("first", "done"),
        ("second", "started"),
        ("second", "done"),
        ("third", "started"),
        ("third", "done"),
    ]
    assert not state_of(host).exists()


@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_a_run_cut_off_at_any_boundary_is_finished_by_the_next_with_each_step_done_once(
    host, monkeypatch, boundary
):
    monkeypatch.setenv(records.CRASH_AFTER, f"counting:{boundary}")
    monkeypatch.setenv(records.CRASH_MODE, "raise")
    with pytest.raises(records.SimulatedKill):
        run_steps(counting(host), STEPS)
    saved = json.loads(state_of(host).read_text())
    cut_in_step = boundary.startswith("in:")
    order = ["first", "second", "third"]
    if boundary == "start":
        done_before = []
    else:
        step = boundary.removeprefix("in:")
        done_before = order[: order.index(step) + (0 if cut_in_step else 1)]
    assert saved["done"] == done_before

    monkeypatch.delenv(records.CRASH_AFTER)
    resumed = counting(host)
    resumed.restore(saved)
    run_steps(resumed, STEPS)
    assert resumed.done == ["first", "second", "third"]
    # A step cut off inside (its work done, its end not journaled) runs again: steps are
    # written to be run again safely. Every other step's work was done exactly once.
    again = boundary.removeprefix("in:") if cut_in_step else None
    for name in ("first", "second", "third"):
        assert times_done(host, name) == (2 if name == again else 1), name
    assert not state_of(host).exists()


def test_a_failing_step_is_named_journaled_and_the_steps_before_it_are_kept(host):
    run = counting(host, broken="second")
    with pytest.raises(StepFailed) as failed:
        run_steps(run, STEPS)
    assert failed.value.step == "second"
    assert str(failed.value) == "second failed: the disk is full"
    assert isinstance(failed.value, DeployError)
    assert journal(host)[-1] == ("second", "failed")
    saved = json.loads(state_of(host).read_text())
    assert saved["done"] == ["first"] and saved["kind"] == "counting"
    assert times_done(host, "third") == 0


def test_a_run_that_cannot_be_resumed_saves_no_state(host, monkeypatch):
    monkeypatch.setenv(records.CRASH_AFTER, "counting:second")
    monkeypatch.setenv(records.CRASH_MODE, "raise")
    with pytest.raises(records.SimulatedKill):
        run_steps(counting(host, resumable=False), STEPS)
    assert not state_of(host).exists()
    assert times_done(host, "second") == 1
