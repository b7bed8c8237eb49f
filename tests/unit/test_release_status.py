"""What `fab releases` says of a release's processes: unexpected exits read from supervisord's
logs, and a program's processes counted together."""

from pathlib import Path

from deploy.flows import app_control
from deploy.host import release_runtime

LOG = """2026-11-29 01:00:00,001 INFO spawned: 'app_0' with pid 10
2026-11-29 01:00:05,002 WARN exited: app_0 (terminated by SIGSEGV (core dumped); not expected)
2026-11-29 01:00:06,003 INFO stopped: celery (exit status 0)
2026-11-29 01:00:07,004 WARN exited: celery (exit status 0; expected)
2026-11-29 01:01:00,005 WARN exited: app_1 (terminated by SIGKILL; not expected)
"""


def test_unexpected_exits_are_read_from_the_log_and_its_rotations(tmp_path):
    (tmp_path / "supervisord.log.2").write_text(
        "2026-11-28 23:00:00,000 WARN exited: app (exit status 1; not expected)\n"
    )
    (tmp_path / "supervisord.log.1").write_text("2026-11-28 23:30:00,000 INFO nothing\n")
    (tmp_path / "supervisord.log").write_text(LOG)
    (tmp_path / "supervisord.log.bak").write_text(LOG)  # not a rotation: ignored
    crashes = release_runtime.crashes(tmp_path)
    assert crashes == [
        {"time": "2026-11-28 23:00:00", "process": "app", "how": "exit status 1"},
        {
            "time": "2026-11-29 01:00:05",
            "process": "app_0",
            "how": "terminated by SIGSEGV (core dumped)",
        },
        {"time": "2026-11-29 01:01:00", "process": "app_1", "how": "terminated by SIGKILL"},
    ]
    assert app_control.crash_summary(crashes) == "3, last 2026-11-29 01:01:00 app_1 SIGKILL"
    assert app_control.crash_summary([]) == "0"
    assert app_control.crash_summary(None) == "?"  # a release whose runtime does not count them


def test_no_log_no_crashes(tmp_path):
    assert release_runtime.crashes(tmp_path) == []


def test_processes_of_a_program_are_counted_together():
    programs = [
        {"name": "app_0", "group": "app", "state": "RUNNING"},
        {"name": "app_1", "group": "app", "state": "STARTING"},
        {"name": "celery", "group": "celery", "state": "RUNNING"},
    ]
    assert app_control.programs_summary(programs) == "app 1/2 running (starting), celery running"
    programs[1]["state"] = "RUNNING"
    assert app_control.programs_summary(programs) == "app 2/2 running, celery running"
    # A release installed before several app processes: one program named app, no group.
    assert app_control.programs_summary([{"name": "app", "state": "RUNNING"}]) == "app running"
    assert app_control.programs_summary([]) == "stopped"


def test_a_release_runs_several_app_processes_on_one_socket_unless_it_predates_them():
    conf = release_runtime.render_conf(Path("/h/webapps/r1"), "production.ini", 20001, "2026r1", {})
    assert "[fcgi-program:app]\nsocket=tcp://127.0.0.1:20001\n" in conf
    assert "numprocs=2\nprocess_name=%(program_name)s_%(process_num)d" in conf
    assert "randopony_serve production.ini --fd 0" in conf
    assert 'PYTHONFAULTHANDLER="1"' in conf
    assert release_runtime.app_processes({"runtime": 2}) == 2
    assert release_runtime.app_processes({}) == 1
    old = release_runtime.render_conf(
        Path("/h/webapps/r1"),
        "production.ini",
        20001,
        "2026r1",
        {},
        processes=1,
    )
    assert "[program:app]" in old and "--port 20001" in old and "fcgi" not in old


def test_waiting_for_up_ends_when_the_app_keeps_exiting_without_going_fatal(tmp_path):
    """On a busy machine an app that fails at start can outlive supervisord's startsecs, so it
    is restarted for ever and never FATAL: the wait must still end, with the app's log."""
    import json
    import socket
    import threading

    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    (tmp_path / "release.json").write_text(json.dumps({"port": port, "release": "2026r9"}))
    (tmp_path / "pyramid.log").write_text("ModuleNotFoundError: No module named 'no_such_addon'\n")
    log = tmp_path / "supervisord.log"
    log.write_text("2026-11-29 01:00:00,000 WARN exited: app_0 (exit status 1; not expected)\n")
    stop = threading.Event()
    exit_line = "2026-11-29 01:00:01,000 WARN exited: app_1 (exit status 1; not expected)\n"

    def crashing():
        while not stop.is_set():
            with open(log, "a") as f:
                f.write(exit_line)
            stop.wait(0.05)

    writer = threading.Thread(target=crashing, daemon=True)
    writer.start()
    try:
        answer = release_runtime.wait_up(tmp_path, timeout=600)
    finally:
        stop.set()
        writer.join()
    assert answer["status"].startswith("the app keeps exiting"), answer
    assert "no_such_addon" in answer["log"]
