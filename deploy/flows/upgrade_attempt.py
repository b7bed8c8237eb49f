"""Time-boxed upgrade attempts, after Lino's: staging is refreshed from production and promoted
for an agreed window in which users test the live site; the maintainer then accepts it (the new
release stays) or cancels it (the promotion's rollback: the previous release comes back with every
registration made in the window).

The attempt is recorded on the host (`deploy/upgrade_attempt.json`) before anything changes, and
the history gets a line at its start and end. While it is open, the host's crontab runs a reminder
every ten minutes that writes to `logs/user/upgrade_reminder.log` once the window has run out;
`fab releases` says so too. Nothing is ever decided by itself.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from deploy.flows import promote, schedule, sync
from deploy.host import layout
from deploy.remote import records
from deploy.remote.hosts import Host
from deploy.remote.target import Target, TargetError

MAX_MINUTES = 7 * 24 * 60
REMINDER = "upgrade_reminder"


def attempt_file(root):
    return layout.deploy_dir(root) / "upgrade_attempt.json"


def read_attempt(host: Host) -> dict | None:
    text = host.read_text(attempt_file(host.root))
    return json.loads(text) if text else None


def _write(host: Host, attempt: dict) -> None:
    host.write_text(attempt_file(host.root), json.dumps(attempt, indent=2) + "\n")


def minutes_value(value) -> int:
    try:
        minutes = int(str(value).strip())
    except ValueError:
        minutes = 0
    if not 1 <= minutes <= MAX_MINUTES:
        raise TargetError(
            f"invalid window {value!r}: a whole number of minutes from 1 to {MAX_MINUTES}"
        )
    return minutes


def _ends(attempt: dict) -> datetime:
    return datetime.fromisoformat(attempt["ends"])


def start(
    target: Target,
    minutes,
    *,
    yes: bool = False,
    confirm: Callable[[str], bool] | None = None,
    password: str | None = None,
    wrangler_password: str | None = None,
) -> dict:
    window = minutes_value(minutes)
    with target.connected() as host:
        attempt = read_attempt(host)
        if attempt:
            raise TargetError(
                f"an upgrade attempt of {attempt['release']} is open until {attempt['ends']}: "
                "end it with `fab upgrade_attempt --accept` or `--cancel` first"
            )
        schedule.entry(host, REMINDER)  # refuses now, not after the promotion, without cron
    # Every check of the promotion runs (and its plan shows) before anything changes.
    promote.ready(target, password)
    question = (
        f"Refresh staging from production, then promote {target.staging_release} to production "
        f"for a {window}-minute upgrade attempt?"
    )
    if not yes and not (confirm and confirm(question)):
        raise TargetError("not confirmed; nothing changed")
    with target.connected() as host:
        attempt = {
            "release": target.staging_release,
            "previous": target.production_release,
            "minutes": window,
            "state": "syncing",
            "by": records.who(),
            "started": records.now(),
        }
        _write(host, attempt)
        try:
            synced = sync.sync_staging(target, wrangler_password)
            attempt["state"] = "promoting"
            _write(host, attempt)
            promoted = promote.promote(target, yes=True, password=password)
        except BaseException:
            # Production is as it was unless the promotion got past its switch: the attempt is
            # on record until the maintainer resumes or undoes it.
            if promote._interrupted(host) is None and _production(host) != attempt["release"]:
                host.remove(attempt_file(host.root))
            raise
        now = datetime.now(UTC)
        attempt.update(
            state="open",
            promoted=now.isoformat(timespec="seconds"),
            ends=(now + timedelta(minutes=window)).isoformat(timespec="seconds"),
        )
        _write(host, attempt)
        schedule.install(target, host, REMINDER, "*/10 * * * *", [], "production")
        records.record_event(
            host,
            "upgrade_attempt",
            release=attempt["release"],
            previous=attempt["previous"],
            minutes=window,
            ends=attempt["ends"],
        )
        return {**attempt, "sync": synced, "promotion": promoted}


def _production(host: Host) -> str | None:
    return records.read_roles(host).get("production")


def _open_attempt(host: Host) -> dict:
    attempt = read_attempt(host)
    if not attempt:
        raise TargetError("there is no upgrade attempt open on this host")
    if promote._interrupted(host) is not None:
        raise TargetError(
            f"the promotion of {attempt['release']} did not finish: "
            "`fab promote_staging_to_production --resume` finishes it (then --accept), or "
            "`fab upgrade_attempt --cancel` undoes it"
        )
    return attempt


def _close(host: Host, attempt: dict, outcome: str) -> dict:
    schedule.remove(host, REMINDER)
    host.remove(attempt_file(host.root))
    records.record_event(
        host,
        f"upgrade_attempt_{outcome}",
        release=attempt["release"],
        previous=attempt.get("previous"),
        minutes=attempt.get("minutes"),
        started=attempt.get("promoted") or attempt.get("started"),
    )
    return {**attempt, "state": outcome}


def accept(target: Target) -> dict:
    with target.connected() as host:
        attempt = _open_attempt(host)
        if _production(host) != attempt["release"]:
            raise TargetError(
                f"production is {_production(host)}, not the attempt's {attempt['release']}: "
                "it was rolled back; `fab upgrade_attempt --cancel` closes the attempt"
            )
        return _close(host, attempt, "accepted")


def cancel(
    target: Target,
    *,
    yes: bool = False,
    confirm: Callable[[str], bool] | None = None,
    password: str | None = None,
) -> dict:
    """Roll back with the promotion's rollback (registrations made in the window are carried
    back), or undo a promotion the attempt left unfinished; then close the attempt."""
    with target.connected() as host:
        attempt = read_attempt(host)
        if not attempt:
            raise TargetError("there is no upgrade attempt open on this host")
        expected = {attempt["release"], attempt.get("previous")}
        if (target.production_release or None) not in expected:
            raise TargetError(
                f"the fabfile's production_release is {target.production_release}, not the "
                f"attempt's {attempt['release']} or {attempt.get('previous')}"
            )
        unfinished = promote._interrupted(host)
        current = _production(host)
    rolled = None
    if unfinished is not None or current == attempt["release"]:
        # The rollback checks the fabfile against production: the attempt knows which it is.
        target.production_release = (
            attempt.get("previous") if unfinished and unfinished["kind"] == "promote" else current
        )
        rolled = promote.rollback(target, yes=yes, confirm=confirm, password=password)
    with target.connected() as host:
        closed = _close(host, attempt, "cancelled")
        return {**closed, "rollback": rolled, "production": _production(host)}


def reminder(host: Host) -> str | None:
    """What the host's crontab runs: a line for the log once the window has run out."""
    attempt = read_attempt(host)
    if not attempt or attempt.get("state") != "open":
        return None
    return overdue(attempt)


def overdue(attempt: dict, now: datetime | None = None) -> str | None:
    ends = _ends(attempt)
    now = now or datetime.now(UTC)
    if now < ends:
        return None
    return (
        f"upgrade attempt of {attempt['release']}: its {attempt['minutes']}-minute window ended "
        f"at {attempt['ends']} ({_span(now - ends)} ago) with no decision. Nothing changes by "
        "itself: `fab upgrade_attempt --accept` keeps it, `fab upgrade_attempt --cancel` rolls "
        "back keeping every registration."
    )


def _span(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    if minutes < 120:
        return f"{minutes} min"
    if minutes < 48 * 60:
        return f"{minutes // 60} h {minutes % 60} min"
    return f"{minutes // (24 * 60)} days"


def status(host: Host) -> str | None:
    """A line for `fab releases`."""
    attempt = read_attempt(host)
    if not attempt:
        return None
    if attempt.get("state") != "open":
        return (
            f"An upgrade attempt of {attempt['release']} is unfinished ({attempt['state']}): "
            "`fab upgrade_attempt --cancel` undoes it."
        )
    return overdue(attempt) or (
        f"Upgrade attempt of {attempt['release']} open until {attempt['ends']}: "
        "`fab upgrade_attempt --accept` or `--cancel`."
    )


def host_status(target: Target) -> list[str]:
    """What `fab releases` adds under its table: the attempt, and the nightly sync."""
    with target.connected() as host:
        lines = [line for line in [status(host)] if line]
        nightly = schedule.entry(host, "sync_staging") if _has_crontab(host) else None
        if nightly:
            minute, hour = nightly.split()[:2]
            lines.append(f"sync_staging runs nightly at {int(hour):02d}:{int(minute):02d}.")
        return lines


def _has_crontab(host: Host) -> bool:
    return host.run(["sh", "-c", "command -v crontab"], check=False).returncode == 0
