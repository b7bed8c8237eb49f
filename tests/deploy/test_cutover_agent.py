"""The host's cutover agent as the release machinery talks to it: one JSON request and answer per
line, clear errors for bad requests, and nothing left running once its stdin closes (a killed
`fab` closes it), not even the read holds it keeps on production's databases."""

import json
import os
import sqlite3
import subprocess

import pytest

from deploy.remote.cutover_client import AgentError, CutoverAgent
from deploy.remote.hosts import LocalHost
from tests.conftest import ROOT

AGENT = ROOT / ".venv" / "bin" / "randopony-cutover"


@pytest.fixture
def agent(tmp_path):
    host = LocalHost(tmp_path)
    conversation = host.spawn([str(AGENT)], cwd=host.root)
    assert json.loads(conversation.read_line()) == {"ready": True}
    agent = CutoverAgent(conversation)
    yield agent
    agent.close()


def live_database(path):
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE riders (email TEXT)")
    db.execute("INSERT INTO riders VALUES ('before@example.org')")
    return db


def children(pid: int) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(word) for word in found.split()]


def test_bad_requests_get_clear_errors_and_the_agent_carries_on(agent, tmp_path):
    with pytest.raises(AgentError, match="unknown request 'reboot'"):
        agent.ask("reboot")
    with pytest.raises(AgentError, match="revision: "):
        agent.ask("revision", database=str(tmp_path / "missing.sqlite"))
    with pytest.raises(AgentError, match="precopy: "):
        agent.ask("precopy", pairs=[[str(tmp_path / "missing.sqlite"), str(tmp_path / "x")]])
    with pytest.raises(AgentError, match="migrate: unknown alembic command 'stamp'"):
        agent.ask("migrate", ini="production.ini", database="x", command="stamp", revision="1")
    with pytest.raises(AgentError, match="copy: "):
        agent.ask("copy", pairs="not pairs")
    assert agent.ask("heads", ini=str(ROOT / "production.ini"))  # still answering


def test_a_hold_copies_what_was_written_after_the_precopy(agent, tmp_path):
    src, dst = tmp_path / "production.sqlite", tmp_path / "new" / "production.sqlite"
    dst.parent.mkdir()
    db = live_database(src)
    pairs = [[str(src), str(dst)]]
    [precopied] = agent.ask("precopy", pairs=pairs)
    assert precopied["mode"] == "precopy"
    db.execute("INSERT INTO riders VALUES ('after@example.org')")
    [copied] = agent.ask("copy", pairs=pairs)
    assert copied["mode"] == "wal"
    copy = sqlite3.connect(dst)
    assert copy.execute("SELECT email FROM riders ORDER BY email").fetchall() == [
        ("after@example.org",),
        ("before@example.org",),
    ]
    copy.close()
    db.close()


def test_closing_its_stdin_ends_the_agent_and_its_read_holds(tmp_path):
    src = tmp_path / "production.sqlite"
    db = live_database(src)
    conversation = LocalHost(tmp_path).spawn([str(AGENT)], cwd=tmp_path)
    agent = CutoverAgent(conversation)
    conversation.read_line()
    agent.ask("precopy", pairs=[[str(src), str(tmp_path / "copy.sqlite")]])
    holders = children(conversation.pid)
    assert holders, "the read hold runs as a child of the agent"
    db.execute("INSERT INTO riders VALUES ('during@example.org')")
    # The held read keeps the WAL from being reset...
    assert db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] == 1
    code, _ = conversation.close()
    assert code == 0
    for holder in holders:
        with pytest.raises(ProcessLookupError):
            os.kill(holder, 0)
    # ...until the agent is gone.
    assert db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] == 0
    db.close()
