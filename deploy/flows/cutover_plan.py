"""The cutover plan: a promotion's or rollback's steps as a numbered checklist, with what each
step touches, how long it should take, and, during and after a run, which steps are done,
running or pending and how long they took.

From Wikimedia's mailman migration plan: a table of numbered steps with a "done?" column, and the
question its review asked first, "how long does rsync take?". A maintainer who knows before the
run how long each step and the write hold should take can announce the hold, and during the run
can tell a slow step from a stuck one.

The estimate of a step, in two rules:

* Past runs on this host (releases.log: the `steps` of "promote", "rollback" and
  "promotion_undone" events): the median of the step's last five durations. For the steps whose
  work grows with the data (copying the databases, copying the rider lists) each past duration is
  first scaled by expected(size now) / expected(size then), where `expected` is the default
  model below: a run that copied 100 MB in 2 s predicts about 20 s for 1 GB, but a run of 0.3 s
  on a tiny database (all process start-up) predicts about the same 0.3 s for twice that. Until
  three runs are recorded the default model counts as one more run: a single run on a quiet or
  a busy machine is a poor guess on its own.
* No past run of the step (nor of its counterpart in the other direction, e.g. copy_back for
  copy_databases): the default model, a fixed time per step (process start-ups, supervisord,
  the worker's warm shutdown, as measured on a small host) plus, for the size-bound steps,
  bytes / an assumed throughput.

Everything here is pure (plain data in, lines out) except `measure`, which asks the host.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from pathlib import PurePosixPath

# The default model: step -> (fixed seconds, bytes per second for the size-bound part or None).
# Measured on the project's 2-core machine (BENCHMARKS.md): a precopy with its fsync moves about
# 400 MB/s, a consistent copy under the lock compares about 1 GB/s; a db_copy or alembic
# process starts in about 0.4 s, a release's app in 2-3 s.
DEFAULTS: dict[str, tuple[float, float | None]] = {
    "stop_staging": (2.0, None),
    "prepare_release": (0.3, None),
    "init_production_db": (3.0, None),
    # The app's start, ahead of the hold: under it the app only opens its database.
    "start_standby": (2.5, None),
    # With the new code's alembic head, learnt here so the hold runs no alembic (about 1 s).
    "precopy_databases": (1.6, 250e6),
    "precopy_files": (0.1, 100e6),
    "stop_old_worker": (1.5, None),
    "hold_writes": (0.1, None),
    "copy_databases": (0.4, 1e9),
    # rsync compares every file's size and time, and sends only what changed since the precopy.
    "copy_files": (0.1, 2e9),
    "migrate_database": (0.3, None),
    "start_new_release": (0.3, None),
    "switch_domain": (0.1, None),
    "start_new_worker": (1.5, None),
    "stop_old_release": (1.5, None),
    "record_promotion": (0.1, None),
    # Rollback steps with work of their own.
    "stop_previous_release": (0.5, None),  # usually stopped already
    "migrate_down": (0.3, None),
    "stop_unpromoted_release": (1.5, None),
    "release_writes": (0.1, None),
    "return_to_staging": (4.0, None),
    "record_rollback": (0.1, None),
}

# Rollback steps that run a promotion step's code the other way: they share defaults and, when
# a step has no history of its own, history.
LIKE = {
    "start_previous_standby": "start_standby",
    "precopy_back": "precopy_databases",
    "precopy_files_back": "precopy_files",
    "stop_current_worker": "stop_old_worker",
    "copy_back": "copy_databases",
    "copy_files_back": "copy_files",
    "start_previous_release": "start_new_release",
    "start_previous_worker": "start_new_worker",
    "stop_current_release": "stop_old_release",
    "restart_previous_worker": "start_new_worker",
}

# Which size a step's duration grows with (see `measure`).
SIZE_BOUND = {
    "precopy_databases": "databases",
    "copy_databases": "databases",
    "precopy_files": "files",
    "copy_files": "files",
}

EVENTS = {"promote": ("promote",), "rollback": ("rollback", "promotion_undone")}
ALL_EVENTS = ("promote", "rollback", "promotion_undone")
RUNS = 5  # the last five runs of a step count: the host and its data change slowly
TRUSTED = 3  # fewer runs than this, and the default model counts as one more

# The steps that begin and end a hold of writes at the router.
HOLD_STARTS = "hold_writes"
HOLD_ENDS = ("switch_domain", "release_writes")


def family(step: str) -> str:
    return LIKE.get(step, step)


def size_kind(step: str) -> str | None:
    return SIZE_BOUND.get(family(step))


def expected(step: str, size: int = 0) -> float:
    """The default model: fixed time plus bytes over throughput."""
    fixed, rate = DEFAULTS.get(family(step), (1.0, None))
    return fixed + (size / rate if rate and size else 0.0)


@dataclass(frozen=True)
class Estimate:
    seconds: float
    runs: int  # past runs it is the median of; 0: the default model alone


def event_size(event: dict, kind: str) -> int | None:
    sizes = event.get("sizes") or {}
    if kind in sizes:
        return int(sizes[kind])
    if kind == "databases" and event.get("copied_bytes"):
        return int(event["copied_bytes"])  # runs recorded before sizes were
    return None


def past_runs(step: str, kind: str, history: list[dict]) -> list[tuple[float, int | None]]:
    """(seconds, size then) of the step's last runs: runs of this kind first; else of any
    step of the same family in either direction."""
    wanted = size_kind(step)
    for events, names in (
        (EVENTS.get(kind, (kind,)), {step}),
        (ALL_EVENTS, _family_names(step)),
    ):
        found = []
        for event in history:
            steps = event.get("steps") or {}
            if event.get("event") not in events:
                continue
            for name in names & steps.keys():
                size = event_size(event, wanted) if wanted else None
                found.append((float(steps[name]), size))
        if found:
            return found[-RUNS:]
    return []


def _family_names(step: str) -> set[str]:
    root = family(step)
    return {root, *(name for name, like in LIKE.items() if like == root)}


def estimate(step: str, kind: str, sizes: dict, history: list[dict]) -> Estimate:
    bound = size_kind(step)
    size = int(sizes.get(bound, 0)) if bound else 0
    past = past_runs(step, kind, history)
    if not past:
        return Estimate(round(expected(step, size), 2), 0)
    scaled = [
        seconds * expected(step, size) / expected(step, then)
        if bound and then is not None
        else seconds
        for seconds, then in past
    ]
    if len(past) < TRUSTED:
        scaled.append(expected(step, size))
    return Estimate(round(statistics.median(scaled), 2), len(past))


def estimates(steps: list[str], kind: str, sizes: dict, history: list[dict]) -> dict:
    return {step: estimate(step, kind, sizes, history) for step in steps}


def held(steps: list[str], holding: bool = False) -> set[str]:
    """The steps that run while writes are held: from hold_writes to the step that releases
    them, both included (`holding`: a hold left by an interrupted run is still on)."""
    under = set()
    for step in steps:
        holding = holding or step == HOLD_STARTS
        if holding:
            under.add(step)
        if step in HOLD_ENDS:
            holding = False
    return under


def measure(
    host, directory: PurePosixPath, databases: tuple[str, ...], files_dir: str
) -> dict[str, int]:
    """What the copies will move, from the source release's directory: the databases with
    their -wal files (the copy reads both) and the rider list files. Two commands on the host."""
    top = host.run(
        ["find", str(directory), "-maxdepth", "1", "-type", "f", "-printf", "%f %s\\n"],
        check=False,
    ).stdout
    listed = dict(line.rsplit(" ", 1) for line in top.splitlines() if " " in line)
    sizes = {}
    for label, name in zip(("database", "queue"), databases, strict=False):
        sizes[label] = int(listed.get(name, 0))
        sizes[f"{label}_wal"] = int(listed.get(f"{name}-wal", 0))
    sizes["databases"] = sum(sizes.values())
    lists = host.run(
        ["find", str(directory / files_dir), "-type", "f", "-printf", "%s\\n"], check=False
    ).stdout.split()
    sizes["files"] = sum(int(size) for size in lists)
    sizes["file_count"] = len(lists)
    return sizes


def describe_sizes(sizes: dict) -> str:
    if not sizes:
        return ""
    return (
        f"database {megabytes(sizes.get('database', 0))} "
        f"(-wal {megabytes(sizes.get('database_wal', 0))}), "
        f"mail queue {megabytes(sizes.get('queue', 0))} "
        f"(-wal {megabytes(sizes.get('queue_wal', 0))}), "
        f"rider lists {megabytes(sizes.get('files', 0))} in {sizes.get('file_count', 0)} file(s)"
    )


def megabytes(size: int) -> str:
    if size < 1e6:
        return f"{size / 1e3:.0f} kB"
    if size < 1e9:
        return f"{size / 1e6:.1f} MB"
    return f"{size / 1e9:.2f} GB"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min"


def running_step(
    journal: str, task: str, release: str | None, since: str | None = None
) -> tuple[str, str] | None:
    """(step, "running" or "failed") from the tail of the host's journal: the run's last line,
    if it is a start without its end (a step under way, or killed in it) or a failure. Lines
    older than `since` (when the run last saved its state) belong to an earlier run."""
    for line in reversed(journal.splitlines()):
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("task") != task or entry.get("release") != release:
            continue
        if since and entry.get("time", "") < since:
            return None
        state = {"started": "running", "failed": "failed"}.get(entry.get("state"))
        return (entry["step"], state) if state else None
    return None


@dataclass
class Row:
    step: str
    touches: str
    estimate: float | None
    state: str = "pending"  # done, running, failed, pending
    measured: float | None = None
    held: bool = False


def rows(
    steps: list[tuple[str, str]],
    estimated: dict[str, float],
    *,
    done: list[str] = (),
    durations: dict[str, float] | None = None,
    current: tuple[str, str] | None = None,
    holding: bool = False,
    sizes: dict | None = None,
) -> list[Row]:
    """One row per (step, what it touches), in order."""
    under = held([name for name, _ in steps], holding)
    table = []
    for name, touches in steps:
        bound = size_kind(name)
        if bound and sizes:
            touches += f" [{megabytes(sizes.get(bound, 0))}]"
        state = "done" if name in done else "pending"
        if current and current[0] == name and state == "pending":
            state = current[1]
        table.append(
            Row(
                name,
                touches,
                estimated.get(name),
                state,
                (durations or {}).get(name) if state == "done" else None,
                name in under,
            )
        )
    return table


def render(table: list[Row], hold_seconds: float | None = None) -> list[str]:
    """The checklist and a line of totals: estimates before a run, progress during one,
    measured against estimated after it."""
    width = max([len(row.step) for row in table] + [4])
    lines = [
        f"  {'#':>3} {'step':<{width}}  {'state':<8} {'estimate':>8} {'measured':>8}  "
        f"{'hold':<4}  what it touches"
    ]
    for number, row in enumerate(table, 1):
        lines.append(
            f"  {number:>2}. {row.step:<{width}}  {row.state:<8} {duration(row.estimate):>8} "
            f"{duration(row.measured):>8}  {'held' if row.held else '':<4}  {row.touches}"
        )
    return lines + [totals(table, hold_seconds)]


def totals(table: list[Row], hold_seconds: float | None = None) -> str:
    estimated = sum(row.estimate or 0.0 for row in table)
    estimated_hold = sum(row.estimate or 0.0 for row in table if row.held)
    done = [row for row in table if row.state == "done"]
    hold = f"writes held about {duration(estimated_hold)}" if estimated_hold else "no write hold"
    if not done:
        return f"  Estimated: {duration(estimated)} in all; {hold}."
    took = sum(row.measured or 0.0 for row in done)
    if len(done) < len(table):
        left = sum(row.estimate or 0.0 for row in table if row.state != "done")
        return (
            f"  Done {len(done)} of {len(table)} steps in {duration(took)} (estimated "
            f"{duration(sum(row.estimate or 0.0 for row in done))}); about {duration(left)} to go; "
            f"{hold}."
        )
    planned = any(row.estimate is not None for row in table)  # a run recorded before plans
    line = f"  Took {duration(took)} in all"
    line += f" (estimated {duration(estimated)})" if planned else ""
    if hold_seconds is not None:
        line += f"; writes held {duration(hold_seconds)}"
        line += f" (estimated {duration(estimated_hold)})" if planned else ""
    return line + "."


def last_run(history: list[dict], touches: dict[str, dict[str, str]]) -> list[str]:
    """The last promotion or rollback in the history (its `steps` in the order they ran),
    measured against the estimates it recorded. `touches`: per kind, what each step touches."""
    for event in reversed(history):
        steps = event.get("steps")
        if event.get("event") in ALL_EVENTS and steps:
            kind = "promote" if event["event"] == "promote" else "rollback"
            table = rows(
                [(name, touches.get(kind, {}).get(name, "")) for name in steps],
                event.get("estimates") or {},
                done=list(steps),
                durations=steps,
                sizes=event.get("sizes"),
            )
            title = f"Last run: {event['event']} of {event.get('release')} at {event.get('time')}:"
            return [title, *render(table, event.get("write_hold_seconds"))]
    return []


def legend(estimated: dict[str, Estimate]) -> str:
    defaults = [step for step, value in estimated.items() if not value.runs]
    if not defaults:
        return "  Estimates: medians of the last runs on this host, copies scaled by size."
    if len(defaults) == len(estimated):
        return "  Estimates: no run on this host yet; fixed times plus size / throughput."
    return (
        "  Estimates: medians of the last runs on this host, copies scaled by size; "
        f"no run yet of {', '.join(defaults)}: fixed times plus size / throughput."
    )
