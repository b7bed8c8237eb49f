"""The host's side of a cutover (a promotion or a rollback), kept running from before writes are
held until after, so that nothing under the hold waits for a Python process to start.

    env/bin/randopony-cutover    (started by the release machinery; talks on stdin and stdout)

One JSON request per line on stdin, one JSON answer per line on stdout ({"error": ...} when a
request fails). The release machinery starts it before the precopy and ends it after the switch;
when its stdin closes (the machinery died, or closed it) it exits, and the read holds it keeps
end with it. Everything it does the release machinery can also do with one-shot commands
(randopony-db-copy, alembic, randopony-release activate): a resumed cutover does.

Requests:
  precopy    {pairs: [[src, dst], ...]}  hold reads on each live source, then copy its bulk
  copy       {pairs: [[src, dst], ...]}  consistent copies, fixing up those precopies
  heads      {ini}                       the alembic heads of that ini's scripts
  revision   {database}                  the alembic revision a SQLite database is at
  migrate    {ini, database, command, revision}
                                         alembic upgrade or downgrade, in this process
  activate   {release_dir, timeout}      the release's app leaves standby; its /up answer
"""

from __future__ import annotations

import importlib
import json
import logging
import sqlite3
import sys
from pathlib import Path

from deploy.host import db_copy, release_runtime


class Agent:
    def __init__(self):
        self.holds: dict[tuple[str, str], db_copy.ReadHold] = {}

    def precopy(self, pairs: list[list[str]]) -> list[dict]:
        done = []
        for src, dst in pairs:
            # Before the bulk is read: see db_copy's "With the source's reads held".
            self.end_hold(src, dst)
            self.holds[(src, dst)] = db_copy.ReadHold(src)
            done.append(db_copy.precopy(src, dst).as_dict())
        return done

    def copy(self, pairs: list[list[str]]) -> list[dict]:
        done = []
        for src, dst in pairs:
            held = self.holds.pop((src, dst), None)
            try:
                result = db_copy.consistent_copy(src, dst, reuse=True, reads_held=held)
            finally:
                if held is not None:
                    held.end()
            done.append(result.as_dict())
        return done

    def end_hold(self, src: str, dst: str) -> None:
        held = self.holds.pop((src, dst), None)
        if held is not None:
            held.end()

    def end(self) -> None:
        for held in self.holds.values():
            held.end()
        self.holds.clear()

    @staticmethod
    def heads(ini: str) -> list[str]:
        from alembic.script import ScriptDirectory

        # The migration environment imports the app's models: imported now, before the hold.
        importlib.import_module("app.models")
        return list(ScriptDirectory.from_config(_alembic_config(ini)).get_heads())

    @staticmethod
    def revision(database: str) -> str | None:
        connection = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
        try:
            row = connection.execute("SELECT version_num FROM alembic_version").fetchone()
        finally:
            connection.close()
        return row[0] if row else None

    @staticmethod
    def migrate(ini: str, database: str, command: str, revision: str) -> dict:
        from alembic import command as alembic_command

        if command not in ("upgrade", "downgrade"):
            raise ValueError(f"unknown alembic command {command!r}")
        config = _alembic_config(ini)
        config.attributes["settings"] = {"sqlalchemy.url": f"sqlite:///{database}"}
        ran = _Ran()
        logger = logging.getLogger("alembic.runtime.migration")
        logger.addHandler(ran)
        logger.setLevel(logging.INFO)
        try:
            getattr(alembic_command, command)(config, revision)
        finally:
            logger.removeHandler(ran)
        return {"ran": ran.lines, "revision": Agent.revision(database)}

    @staticmethod
    def activate(release_dir: str, timeout: float) -> dict:
        return release_runtime.activate(Path(release_dir), timeout)


class _Ran(logging.Handler):
    """The migrations alembic ran, as it logs them ("Running upgrade 0004 -> 0005, ...")."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith(("Running upgrade", "Running downgrade")):
            self.lines.append(message.removeprefix("Running "))


def _alembic_config(ini: str):
    from alembic.config import Config

    return Config(ini)


def answer(agent: Agent, request: dict) -> dict:
    do = request.get("do")
    args = {key: value for key, value in request.items() if key != "do"}
    handlers = {
        "precopy": agent.precopy,
        "copy": agent.copy,
        "heads": agent.heads,
        "revision": agent.revision,
        "migrate": agent.migrate,
        "activate": agent.activate,
    }
    if do not in handlers:
        return {"error": f"unknown request {do!r}"}
    try:
        return {"result": handlers[do](**args)}
    except (db_copy.CopyError, OSError, sqlite3.Error, ValueError, TypeError) as error:
        return {"error": f"{do}: {error}"}
    except Exception as error:  # alembic's and the migrations' own errors: reported, not fatal
        return {"error": f"{do}: {type(error).__name__}: {error}"}


def main() -> int:
    # Stdout carries the answers alone: anything else printed goes to stderr.
    replies, sys.stdout = sys.stdout, sys.stderr
    agent = Agent()
    try:
        print(json.dumps({"ready": True}), file=replies, flush=True)
        for line in sys.stdin:
            if not line.strip():
                continue
            try:
                request = json.loads(line)
            except ValueError:
                reply = {"error": "not a JSON request"}
            else:
                reply = answer(agent, request) if isinstance(request, dict) else {"error": "?"}
            print(json.dumps(reply), file=replies, flush=True)
    finally:
        agent.end()
    return 0


if __name__ == "__main__":
    sys.exit(main())
