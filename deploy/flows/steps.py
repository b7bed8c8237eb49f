"""The one step runner every flow uses: staging's deploys, the promotion and the rollback, the
staging refresh and the removal of old releases.

A flow is a list of named steps and a `Run`, the state its steps share. For each step that
applies and is not done yet, the runner says what it changes, journals its start on the host
before it runs and its end after, times it, and then saves the run's state on the host (for a
flow that can be resumed), so a run killed anywhere is taken up where it stopped. It is also
where the tests' crash hook sits: deploy/remote/records.py's crash_point, at every boundary.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from deploy.flows.release import DeployError
from deploy.remote import records
from deploy.remote.hosts import Host, HostError
from deploy.remote.panel_client import HostingError
from deploy.remote.target import Target, TargetError

FAILURES = (HostError, DeployError, TargetError, HostingError)


def always(run: Any) -> bool:
    return True


@dataclass(frozen=True)
class Step:
    name: str
    changes: str  # what it touches, as the plan and the progress lines say it
    run: Callable[[Any], None]
    applies: Callable[[Any], bool] = always


class StepFailed(DeployError):
    def __init__(self, step: str, error: BaseException):
        super().__init__(f"{step} failed: {error}")
        self.step = step


@dataclass
class Run:
    """What a flow's steps share. A resumable flow names its state file; the runner saves
    `done`, `durations` and the flow's own `state()` there after every step."""

    target: Target
    host: Host
    done: list[str] = field(default_factory=list, kw_only=True)
    durations: dict[str, float] = field(default_factory=dict, kw_only=True)

    @property
    def task(self) -> str:
        """The journal's name for the run, and the prefix of its crash points."""
        raise NotImplementedError

    @property
    def subject(self) -> str | None:
        """The release the journal lines name."""
        raise NotImplementedError

    def state_file(self) -> PurePosixPath | None:
        return None  # not resumable: every step can simply run again

    def state(self) -> dict:
        return {}

    def save(self) -> None:
        path = self.state_file()
        if path is None:
            return
        state = {
            **self.state(),
            "done": self.done,
            "durations": self.durations,
            "by": records.who(),
            "updated": records.now(),
        }
        self.host.write_text(path, json.dumps(state, indent=2) + "\n")

    def restore(self, state: dict) -> None:
        self.done = list(state.get("done", []))
        self.durations = dict(state.get("durations", {}))

    def crash_names(self, boundary: str) -> tuple[str, ...]:
        return (f"{self.task}:{boundary}",)

    def before(self, step: Step) -> None:
        """Called just before a step runs (after a resume too)."""


def applicable(run: Run, steps: tuple[Step, ...]) -> list[Step]:
    return [step for step in steps if step.applies(run)]


def run_steps(run: Run, steps: tuple[Step, ...]) -> None:
    """Run the steps not yet done, journaled, saving the state after each; the state file goes
    once the last step is done. A failure raises StepFailed naming the step."""
    journal = records.Journal(run.host, run.task, run.subject)
    echo = run.target.echo
    run.save()
    crash_point(run, "start")
    for step in steps:
        if step.name in run.done or not step.applies(run):
            continue
        run.before(step)
        echo(f"→ {step.name}: {step.changes}")
        started = time.monotonic()
        try:
            with journal.step(step.name):
                step.run(run)
                crash_point(run, f"in:{step.name}")  # its work done, its end not journaled
        except FAILURES as error:
            echo(f"✗ {step.name} failed after {time.monotonic() - started:.1f} s")
            raise StepFailed(step.name, error) from None
        run.durations[step.name] = round(time.monotonic() - started, 2)
        run.done.append(step.name)
        run.save()
        echo(f"✓ {step.name} ({run.durations[step.name]:.1f} s)")
        crash_point(run, step.name)
    path = run.state_file()
    if path is not None:
        run.host.remove(path)


def crash_point(run: Run, boundary: str) -> None:
    """Fault injection for the tests, on test hosts only: a kill -9 at this boundary."""
    records.crash_point(run.host, *run.crash_names(boundary))
