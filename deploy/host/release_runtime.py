"""What runs ON a host inside a release's own virtualenv: its supervisord (the app on waitress and
its celery worker) and the answers the release machinery needs.

    env/bin/randopony-release <release dir> COMMAND
    COMMAND: start-supervisor [--app-only] [--standby] | stop-supervisor | reload | start-app
             | stop-app | start-worker | stop-worker | status
             | wait-up [--timeout S] [--standby] | activate [--timeout S]
             | tail app|celery|supervisord [--lines N]

The release machinery runs these commands through the Host (locally or over SSH), so supervisord
is always driven through its XML-RPC socket on the machine where it runs.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import sys
import time
import urllib.error
import urllib.request
import xmlrpc.client
from pathlib import Path

from deploy.host import layout, supervisor

APP, CELERY = "app", "celery"
# Every process of a program, whether it runs one (a plain program) or several (numprocs).
ALL = ":*"
# Releases installed since runtime 2 run several app processes on one socket (below); an older
# release's own runtime knows only a single program named "app", so its conf stays that way.
RUNTIME = 2
APP_PROCESSES = 2


def app_processes(info: dict) -> int:
    """How many app processes a release runs, from its release.json."""
    return APP_PROCESSES if int(info.get("runtime", 1)) >= 2 else 1


def render_conf(
    release_dir: Path,
    ini: str,
    port: int,
    release: str,
    environment: dict[str, str],
    concurrency: int = 2,
    processes: int = APP_PROCESSES,
) -> str:
    """The release's supervisord.conf: the app bound to 127.0.0.1 on the panel's port, and its
    celery worker, both reading the release's ini.

    With processes > 1 the app is an fcgi-program: supervisord binds the port itself and hands
    the listening socket to every process as fd 0. Connections wait in that one queue, so when a
    process dies (a crash, the OOM killer) the others accept what it had not yet taken, and the
    port never stops answering while supervisord restarts it."""
    env_bin = release_dir / layout.ENV / "bin"
    v = supervisor.conf_value
    # Bytecode is cached as the release's modules are first imported, as on any Python server,
    # even where the maintainer's environment says otherwise (this one sets
    # PYTHONDONTWRITEBYTECODE=1): compiling every installed module at install costs far more.
    env = {
        "RANDOPONY_RELEASE": release,
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "",
        # A segfault or abort in any process leaves every thread's Python stack in its log.
        "PYTHONFAULTHANDLER": "1",
        **environment,
    }
    env_line = ",".join(f'{k}="{v(val)}"' for k, val in sorted(env.items()) if '"' not in val)
    celery_command = shlex.join(
        [str(env_bin / "randopony_worker"), ini, "--concurrency", str(concurrency)]
    )
    logs = {name: release_dir / file for name, file in layout.LOGS.items()}
    if processes > 1:
        app_command = shlex.join([str(env_bin / "randopony_serve"), ini, "--fd", "0"])
        app_section = f"""[fcgi-program:{APP}]
socket=tcp://127.0.0.1:{port}
socket_backlog=1024
numprocs={processes}
process_name=%(program_name)s_%(process_num)d"""
    else:
        app_command = shlex.join([str(env_bin / "randopony_serve"), ini, "--port", str(port)])
        app_section = f"[program:{APP}]"
    return f"""; Written by the release machinery (install_app); changes are overwritten.
[unix_http_server]
file={v(release_dir / layout.SUPERVISOR_SOCKET)}
chmod=0700

[supervisord]
logfile={v(logs["supervisord"])}
pidfile={v(release_dir / "supervisord.pid")}
childlogdir={v(release_dir)}
directory={v(release_dir)}
; its programs create files for their owner alone (databases, rider lists, logs)
umask=077
identifier=randopony-{v(release)}

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=unix://{v(release_dir / layout.SUPERVISOR_SOCKET)}

{app_section}
command={v(app_command)}
directory={v(release_dir)}
environment={env_line}
autostart=true
autorestart=true
startsecs=1
stopsignal=TERM
stopwaitsecs=30
redirect_stderr=true
stdout_logfile={v(logs["app"])}
stdout_logfile_maxbytes=10MB
stdout_logfile_backups=5

[program:{CELERY}]
command={v(celery_command)}
directory={v(release_dir)}
environment={env_line},C_FORCE_ROOT="1"
; started by the release machinery: a promotion starts the worker only once the release serves
autostart=false
autorestart=true
startsecs=1
; a warm shutdown finishes the task in hand before the worker exits
stopsignal=TERM
stopwaitsecs=60
stopasgroup=true
killasgroup=true
redirect_stderr=true
stdout_logfile={v(logs["celery"])}
stdout_logfile_maxbytes=10MB
stdout_logfile_backups=5
"""


def paths(release_dir: Path) -> tuple[Path, Path]:
    return release_dir / layout.SUPERVISORD_CONF, release_dir / layout.SUPERVISOR_SOCKET


def started_conf(release_dir: Path) -> Path:
    """A copy of the config supervisord was started with, to tell whether it must restart."""
    return release_dir / (layout.SUPERVISORD_CONF + ".started")


def start_supervisor(release_dir: Path, app_only: bool = False, standby: bool = False) -> str:
    """supervisord with the app and (unless app_only) the worker, waiting until they run. With
    `standby` the app starts in standby (it opens no database until `activate`); without, a
    standby file left by an interrupted cutover is removed first, so the app serves."""
    conf, sock = paths(release_dir)
    if not conf.exists():
        raise supervisor.SupervisorError(f"{conf} is missing: run install_app first")
    flag = release_dir / layout.STANDBY
    if standby:
        flag.touch()
    else:
        flag.unlink(missing_ok=True)
    started = supervisor.start(conf, sock)
    if started:
        copy = started_conf(release_dir)
        copy.write_text(conf.read_text())
        copy.chmod(0o600)  # as secret as the config it copies
    wait_running(release_dir, APP)
    now_started = [APP] if started else []
    if not app_only and supervisor.start_program(sock, CELERY):
        now_started.append(CELERY)
    if started:
        return "supervisord started with " + " and ".join(now_started)
    return "supervisord was running; started " + (", ".join(now_started) or "nothing")


def wait_running(release_dir: Path, name: str, timeout: float = 60) -> None:
    """Until supervisord counts the program as running; a program that keeps crashing
    (FATAL) fails at once, with the end of its log."""
    _, sock = paths(release_dir)
    supervisor.start_program(sock, name + ALL)
    supervisor.wait(
        lambda: program_state(sock, name) in ("RUNNING", "FATAL"), timeout, f"{name} to run"
    )
    if program_state(sock, name) == "FATAL":
        log = APP if name == APP else CELERY
        raise supervisor.SupervisorError(
            f"{name} keeps exiting (FATAL); the end of its log:\n{tail(release_dir, log, 15)}"
        )


def program_state(sock: Path, name: str) -> str | None:
    """One state for all of a program's processes: FATAL if one is, RUNNING if all are, else
    the state of the first that is not running (None: no such program)."""
    states = [p.state for p in supervisor.programs(sock) if (p.group or p.name) == name]
    if not states:
        return None
    if "FATAL" in states:
        return "FATAL"
    return next((state for state in states if state != "RUNNING"), "RUNNING")


def reload(release_dir: Path, wait_up_seconds: float | None = None) -> tuple[str, dict | None]:
    """Put new code in service. The app restarts (and, with wait_up_seconds, is waited for until
    /up answers); then the worker gets a warm shutdown (it finishes the task in hand) and
    supervisord starts it again on the new code, without holding up the deploy. The worker goes
    second so its restart does not compete with the app's for the CPU. A changed
    supervisord.conf needs a full restart."""
    conf, sock = paths(release_dir)
    previous = started_conf(release_dir)
    answer = None
    if (
        not supervisor.answers(sock)
        or not previous.exists()
        or previous.read_text() != conf.read_text()
    ):
        said = f"{stop_supervisor(release_dir)}; {start_supervisor(release_dir)}"
        if wait_up_seconds:
            answer = wait_up(release_dir, wait_up_seconds)
        return said, answer
    supervisor.stop_program(sock, APP + ALL)
    # No waiting out supervisord's startsecs: the health check waits for the app itself.
    supervisor.client(sock).startProcess(APP + ALL, False)
    if wait_up_seconds:
        answer = wait_up(release_dir, wait_up_seconds)
    try:
        supervisor.client(sock).signalProcess(CELERY, "TERM")
        worker = "the worker restarts on the new code after its current task"
    except xmlrpc.client.Fault:  # not running: start it
        supervisor.start_program(sock, CELERY)
        worker = "the worker started"
    return f"app restarted; {worker}", answer


def stop_supervisor(release_dir: Path) -> str:
    _, sock = paths(release_dir)
    if supervisor.shutdown(sock):
        return "supervisord stopped; the app and celery are gone"
    return "supervisord was not running"


def start_app(release_dir: Path) -> str:
    """Start the app (and supervisord if need be) and wait until it answers /up."""
    _, sock = paths(release_dir)
    if not supervisor.answers(sock):
        said = start_supervisor(release_dir)
    elif supervisor.start_program(sock, APP + ALL):
        said = "app started"
    else:
        said = "app was running"
    answer = wait_up(release_dir, 60)
    if answer.get("http") != 200:
        raise supervisor.SupervisorError(f"{said}, but it does not report healthy: {answer}")
    return f"{said}; it answers at {answer['url']} ({answer.get('status')})"


def start_worker(release_dir: Path) -> str:
    _, sock = paths(release_dir)
    if not supervisor.answers(sock):
        return start_supervisor(release_dir)
    if supervisor.start_program(sock, CELERY):
        return "worker started"
    return "worker was running"


def stop_worker(release_dir: Path) -> str:
    """A warm stop: the worker finishes the task in hand; queued tasks stay in the queue."""
    _, sock = paths(release_dir)
    if supervisor.stop_program(sock, CELERY):
        return "worker stopped after its current task; its queue is kept"
    return "worker was not running"


def stop_app(release_dir: Path) -> str:
    _, sock = paths(release_dir)
    if supervisor.stop_program(sock, APP + ALL):
        return "app stopped; its process is gone"
    return "app was not running"


# supervisord's line for a process that exited when it was not asked to:
# "2026-11-29 01:02:03,456 WARN exited: app_1 (terminated by SIGSEGV (core dumped); not expected)"
UNEXPECTED_EXIT = re.compile(r"(\S+ \S+) \w+ exited: (\S+) \((.*); not expected\)")


def crashes(release_dir: Path) -> list[dict]:
    """Every unexpected exit of the release's processes that supervisord logged (its log and
    the rotated ones, oldest first): when, which process, and how it ended."""
    log = release_dir / layout.LOGS["supervisord"]
    rotated = [f for f in release_dir.glob(log.name + ".*") if f.suffix[1:].isdigit()]
    found = []
    for path in [*sorted(rotated, key=lambda f: -int(f.suffix[1:])), log]:
        try:
            text = path.read_text(errors="replace")
        except FileNotFoundError:
            continue
        for match in UNEXPECTED_EXIT.finditer(text):
            when, process, how = match.groups()
            found.append({"time": when.split(",")[0], "process": process, "how": how})
    return found


def status(release_dir: Path) -> dict:
    _, sock = paths(release_dir)
    info = {}
    release_json = release_dir / layout.RELEASE_JSON
    if release_json.exists():
        info = json.loads(release_json.read_text())
    return {
        "release_dir": str(release_dir),
        "installed": (release_dir / layout.ENV / "bin" / "python").exists(),
        "supervisord": supervisor.answers(sock),
        "programs": [p.__dict__ for p in supervisor.programs(sock)],
        "crashes": crashes(release_dir),
        "release": info,
    }


# Unexpected exits of the app, while waiting for it to answer, that mean it will not.
KEEPS_EXITING = 4


def activate(release_dir: Path, timeout: float) -> dict:
    """Let an app in standby open its database (its data is in place), and wait until it
    reports healthy; an app that is not running (a host restarted mid-cutover) is started.
    Polled often: a cutover's held writes wait for this."""
    start_supervisor(release_dir, app_only=True)  # removes the standby file; starts if need be
    return wait_up(release_dir, timeout, interval=0.01)


def wait_up(release_dir: Path, timeout: float, want: str = "ok", interval: float = 0.2) -> dict:
    """Poll the app's /up until it reports healthy (or, with want="standby", until it answers
    from standby: loaded, no database opened); the answer is printed either way."""
    info = json.loads((release_dir / layout.RELEASE_JSON).read_text())
    url = f"http://127.0.0.1:{info['port']}/up"
    deadline = time.monotonic() + timeout
    answer = {"status": "no answer", "url": url}
    sock = paths(release_dir)[1]
    exits_before = len(app_exits(release_dir))
    while time.monotonic() < deadline:
        if program_state(sock, APP) == "FATAL":
            return dict(
                answer, status="the app keeps exiting (FATAL)", log=tail(release_dir, APP, 15)
            )
        # On a busy machine an app that fails at start can live past startsecs before it
        # exits: supervisord then restarts it for ever and never says FATAL.
        if len(app_exits(release_dir)) - exits_before >= KEEPS_EXITING:
            return dict(
                answer,
                status=f"the app keeps exiting ({KEEPS_EXITING} exits while waiting for /up)",
                log=tail(release_dir, APP, 15),
            )
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                answer = dict(json.loads(response.read()), http=response.status, url=url)
        except urllib.error.HTTPError as error:
            answer = dict(json.loads(error.read() or b"{}"), http=error.code, url=url)
        except (OSError, ValueError) as error:
            answer = {"status": "no answer", "error": str(error), "url": url}
        # Another program on the port (a release left running) must not pass for this one.
        if answer.get("release") not in (info.get("release"), None):
            answer = dict(
                answer,
                http=None,
                status=f"port {info['port']} answered by another release ({answer.get('release')})",
            )
        elif (want == "ok" and answer.get("http") == 200) or (
            want != "ok" and answer.get("status") == want
        ):
            return answer
        time.sleep(interval)
    if answer.get("http") is None:
        answer = dict(answer, log=tail(release_dir, APP, 15))
    return answer


def app_exits(release_dir: Path) -> list[dict]:
    return [c for c in crashes(release_dir) if c["process"].split("_")[0] == APP]


def tail(release_dir: Path, log: str, lines: int) -> str:
    path = release_dir / layout.LOGS[log]
    if not path.exists():
        return f"({path.name} is empty: nothing logged yet)"
    with open(path, "rb") as f:
        f.seek(0, 2)
        f.seek(max(0, f.tell() - 200 * lines))
        text = f.read().decode(errors="replace")
    return "\n".join(text.splitlines()[-lines:])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="randopony-release", description=__doc__)
    parser.add_argument("release_dir", type=Path)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in (
        "start-supervisor",
        "stop-supervisor",
        "reload",
        "start-app",
        "stop-app",
        "start-worker",
        "stop-worker",
        "status",
    ):
        sub.add_parser(name)
    sub.choices["start-supervisor"].add_argument(
        "--app-only", action="store_true", help="the worker stays stopped"
    )
    sub.choices["start-supervisor"].add_argument(
        "--standby", action="store_true", help="the app opens no database until `activate`"
    )
    reload_parser = sub.choices["reload"]
    reload_parser.add_argument("--wait-up", type=float, metavar="S", help="then wait for /up")
    wait = sub.add_parser("wait-up")
    wait.add_argument("--timeout", type=float, default=60)
    wait.add_argument("--standby", action="store_true", help="until it answers from standby")
    sub.add_parser("activate").add_argument("--timeout", type=float, default=60)
    tail_parser = sub.add_parser("tail")
    tail_parser.add_argument("log", choices=sorted(layout.LOGS))
    tail_parser.add_argument("--lines", type=int, default=50)
    args = parser.parse_args(argv)
    release_dir = args.release_dir.resolve()
    try:
        if args.command == "status":
            print(json.dumps(status(release_dir)))
        elif args.command in ("wait-up", "activate"):
            want = "standby" if getattr(args, "standby", False) else "ok"
            if args.command == "activate":
                answer = activate(release_dir, args.timeout)
            else:
                answer = wait_up(release_dir, args.timeout, want)
            print(json.dumps(answer))
            reached = answer.get("http") == 200 if want == "ok" else answer["status"] == want
            return 0 if reached else 3
        elif args.command == "tail":
            print(tail(release_dir, args.log, args.lines))
        else:
            if args.command == "reload":
                said, answer = reload(release_dir, args.wait_up)
                print(said)
                if answer is not None:
                    print(json.dumps(answer))
                    return 0 if answer.get("http") == 200 else 3
                return 0
            if args.command == "start-supervisor":
                print(start_supervisor(release_dir, args.app_only, args.standby))
                return 0
            action = {
                "stop-supervisor": stop_supervisor,
                "start-app": start_app,
                "stop-app": stop_app,
                "start-worker": start_worker,
                "stop-worker": stop_worker,
            }[args.command]
            print(action(release_dir))
    except supervisor.SupervisorError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
