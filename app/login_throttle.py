"""Login backoff, per client address and per account.

After a few failed logins from one client or for one account, each further failure doubles the
wait before the next try (capped, so an attacker cannot shut a wrangler out for long), and a try
while waiting is refused before the password is checked: a guess costs an argon2 verify, 64 MiB
on one of the app's few threads.

Each try is counted, as a failure, before the password is verified, in its own short transaction
that takes SQLite's write lock first: parallel guesses queue on the lock and each one sees the
ones before it, so they cannot all get through. A success clears the account's record and takes
its own count back from the client's. The counts live in the database because a release runs two
app processes and a restart must not hand out a fresh allowance.

These transactions run before the request's own one (which, for a POST, holds the write lock
until the answer): the login view calls them before it touches `request.db`.
"""

import hashlib
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete
from sqlalchemy.exc import OperationalError

from .models import LoginFailure, WriteLockBusy

KEY_MAX = 100


@dataclass(frozen=True)
class Policy:
    free_failures: int = 5
    first_wait: float = 1.0  # seconds, after the free failures; doubled by each further one
    max_wait: float = 15 * 60.0
    # A record this long after its last failure is forgotten (and purged).
    forget_after: float = 24 * 3600.0

    @classmethod
    def from_settings(cls, settings) -> "Policy":
        policy = cls(
            free_failures=int(settings.get("login.free_failures", cls.free_failures)),
            first_wait=float(settings.get("login.first_wait", cls.first_wait)),
            max_wait=float(settings.get("login.max_wait", cls.max_wait)),
            forget_after=float(settings.get("login.forget_after", cls.forget_after)),
        )
        if policy.free_failures < 1 or not 0 < policy.first_wait <= policy.max_wait:
            raise ValueError(f"login backoff settings make no sense: {policy}")
        # A block must never outlive its record, or forgetting would end it early.
        if policy.forget_after < policy.max_wait:
            raise ValueError("login.forget_after must be at least login.max_wait")
        return policy

    def wait(self, failures: int) -> timedelta | None:
        if failures < self.free_failures:
            return None
        doublings = min(failures - self.free_failures, 32)  # 2**32 s is past any cap
        return timedelta(seconds=min(self.first_wait * 2**doublings, self.max_wait))


def now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def keys(client: str | None, email: str) -> tuple[str, str]:
    """(client key, account key). The email is hashed: the table holds no one's address."""
    account = hashlib.sha256(email.encode("utf-8", "surrogatepass")).hexdigest()
    return f"client:{client or 'unknown'}"[:KEY_MAX], f"account:{account}"


def policy_of(request) -> Policy:
    return request.registry["login_throttle_policy"]  # see app.security.includeme


def _write_session(request):
    db = request.registry["dbsession_factory"]()
    try:
        db.connection(execution_options={"sqlite_begin": "IMMEDIATE"})
    except OperationalError as error:
        db.close()
        if "locked" not in str(error.orig):
            raise
        raise WriteLockBusy(str(error.orig)) from error  # nothing counted; pyramid_retry retries
    return db


def take_attempt(request, key_pair: tuple[str, str]) -> int | None:
    """Count a try against both keys and return None; or, while either key must wait, count
    nothing and return the seconds left to wait."""
    policy = policy_of(request)
    at = now()
    forgotten = at - timedelta(seconds=policy.forget_after)
    with _write_session(request) as db:
        rows = {key: db.get(LoginFailure, key) for key in key_pair}
        waits = [
            row.blocked_until - at
            for row in rows.values()
            if row is not None and row.blocked_until is not None and row.blocked_until > at
        ]
        if waits:
            return max(1, math.ceil(max(waits).total_seconds()))
        for key, row in rows.items():
            if row is None:
                row = LoginFailure(key=key, failures=0)
                db.add(row)
            elif row.last_failure < forgotten:
                row.failures = 0
            row.failures += 1
            row.last_failure = at
            wait = policy.wait(row.failures)
            row.blocked_until = at + wait if wait else None
        db.execute(
            delete(LoginFailure).where(
                LoginFailure.last_failure < forgotten, LoginFailure.key.not_in(key_pair)
            )
        )
        db.commit()
    return None


def record_success(request, key_pair: tuple[str, str]) -> None:
    policy = policy_of(request)
    client_key, account_key = key_pair
    with _write_session(request) as db:
        account = db.get(LoginFailure, account_key)
        if account is not None:
            db.delete(account)
        client = db.get(LoginFailure, client_key)
        if client is not None:
            # The try was counted as a failure before the password was checked.
            client.failures = max(client.failures - 1, 0)
            wait = policy.wait(client.failures)
            client.blocked_until = client.last_failure + wait if wait else None
        db.commit()
