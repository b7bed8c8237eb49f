"""A fab task run in the test's own process, cut off at a step boundary by the in-process crash
hook (SimulatedKill) instead of a kill -9: the same task function, host, steps and saved state,
without starting a Python and logging in to the panel for every boundary. What a kill leaves and
this does not: the host's lock (a kill leaves it held by a dead process; --resume takes it over)
and the journal's missing end line (this writes "failed"). So each flow keeps real kill -9 runs
at a few boundaries: the start, inside a step, under the hold, right after the switch."""

from __future__ import annotations

import contextlib
import io
import os

import pytest
from invoke import Context

from deploy.remote import records


@contextlib.contextmanager
def environment(values: dict[str, str]):
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def cut_off(host, task: str, *, at: str, **options) -> str:
    """Run fabfile's `task` (promote_staging_to_production, rollback_production...) with the
    host's environment and `options`, cut off at boundary `at`; returns what it printed."""
    import fabfile

    env = {name: value for name, value in options.items() if name.isupper()}
    arguments = {name: value for name, value in options.items() if not name.isupper()}
    said = io.StringIO()
    with (
        environment({**host.env, **env, records.CRASH_AFTER: at, records.CRASH_MODE: "raise"}),
        contextlib.redirect_stdout(said),
        pytest.raises(records.SimulatedKill),
    ):
        getattr(fabfile, task)(Context(), **arguments)
    return said.getvalue()
