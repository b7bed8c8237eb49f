"""Real services for integration tests: an SMTP server (aiosmtpd) and a celery worker process."""

import configparser
import email
import email.policy
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from tests.conftest import ROOT, free_port

BIN = Path(sys.executable).parent


class Mailbox:
    """Collects what the SMTP server receives; tests wait on it."""

    def __init__(self):
        self.messages = []
        self.changed = threading.Condition()

    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self.changed:
            self.messages.append((envelope.rcpt_tos, message, time.monotonic()))
            self.changed.notify_all()
        return "250 OK"

    def wait_for(self, count: int, timeout: float = 60) -> list:
        with self.changed:
            self.changed.wait_for(lambda: len(self.messages) >= count, timeout=timeout)
            return list(self.messages)


@pytest.fixture
def smtp_server():
    mailbox = Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield controller.port, mailbox
    finally:
        controller.stop()


def write_ini(path: Path, settings: dict) -> Path:
    """testing.ini with the test's settings in [app:main], for processes that read an ini."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(ROOT / "testing.ini")
    for key, value in settings.items():
        parser.set("app:main", key, str(value))
    parser.set("logger_app", "level", "INFO")  # tests read what the worker did from its log
    with open(path, "w") as f:
        parser.write(f)
    return path


class WorkerProcess:
    def __init__(self, ini: Path, log: Path):
        self.log = log
        self.process = subprocess.Popen(
            [BIN / "randopony_worker", str(ini), "--concurrency", "1"],
            stdout=open(log, "wb"),
            stderr=subprocess.STDOUT,
            env=dict(os.environ, C_FORCE_ROOT="1"),
            start_new_session=True,
        )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for_output(self, text: str, timeout: float = 60) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.output():
                return True
            if self.process.poll() is not None:
                raise AssertionError(f"worker exited:\n{self.output()}")
            time.sleep(0.05)
        return False

    def stop(self):
        if self.process.poll() is None:
            # A warm shutdown can take 4-12 s on the SQLite broker; these tests are done with
            # the worker's tasks by now, so it gets 3 s before it is killed.
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=3)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


@pytest.fixture
def start_worker(tmp_path):
    workers = []

    def start(settings: dict) -> WorkerProcess:
        ini = write_ini(tmp_path / f"worker{len(workers)}.ini", settings)
        worker = WorkerProcess(ini, tmp_path / f"worker{len(workers)}.log")
        workers.append(worker)
        assert worker.wait_for_output("ready."), worker.output()
        return worker

    try:
        yield start
    finally:
        for worker in workers:
            worker.stop()
