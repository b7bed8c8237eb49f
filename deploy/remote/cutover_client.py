"""The release machinery's side of the host's cutover agent (deploy/host/cutover_agent.py): one
program on the host, started before writes are held, that does the hold's copies, migration and
activation without starting a process for each."""

from __future__ import annotations

import json
from pathlib import PurePosixPath

from deploy.host import layout
from deploy.remote.hosts import Conversation, Host, HostError

PROGRAM = "randopony-cutover"


class AgentError(HostError):
    """The agent answered that a request failed; the message is its answer."""


class CutoverAgent:
    def __init__(self, conversation: Conversation):
        self.conversation = conversation

    @classmethod
    def start(cls, host: Host, release_dir: PurePosixPath) -> CutoverAgent | None:
        """The agent of the release in `release_dir`, or None for a release that has none (one
        installed before it existed): the caller then runs one-shot commands."""
        program = release_dir / layout.ENV / "bin" / PROGRAM
        if not host.exists(program):
            return None
        agent = cls(host.spawn([str(program)], cwd=release_dir))
        ready = json.loads(agent.conversation.read_line())
        if not ready.get("ready"):
            agent.close()
            raise HostError(f"{PROGRAM} did not start: {ready}")
        return agent

    def ask(self, do: str, **args):
        reply = json.loads(self.conversation.ask(json.dumps({"do": do, **args})))
        if "error" in reply:
            raise AgentError(reply["error"])
        return reply["result"]

    def close(self) -> None:
        self.conversation.close()
