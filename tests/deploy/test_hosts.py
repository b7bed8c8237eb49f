"""The Host contract, run against both implementations: LocalHost on a folder here and SSHHost on
the same kind of folder reached through a real sshd on loopback (tests/sshd.py). Both live on
this machine, so every effect is checked on the file system directly, not through the host."""

from __future__ import annotations

import http.server
import os
import socket
import stat
import subprocess
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from deploy.remote.hosts import HostError, LocalHost, PathOutsideRoot
from deploy.remote.ssh import HostSpec, SSHHost, parse_host_spec

# Words a shell would act on; each must reach the program as the very same bytes.
NASTY = [
    "two words",
    'it\'s "quoted"',
    "$(touch {marker}-dollar)",
    "`touch {marker}-backtick`",
    "; touch {marker}-semicolon",
    "&& touch {marker}-and",
    "| touch {marker}-pipe",
    "line one\ntouch {marker}-newline",
    "> {marker}-redirect",
    "$HOME ~ * ?",
    "-n",
    "",
    "tab\there, ünïcode",
]


@pytest.fixture
def root(tmp_path) -> Path:
    # A space and a quote in the root itself: every path a host sends must be quoted.
    folder = tmp_path.resolve() / "pony's host root"
    folder.mkdir()
    return folder


@pytest.fixture(params=["local", "ssh"])
def kind(request) -> str:
    return request.param


@pytest.fixture
def make_host(kind, request):
    hosts = []

    def make(root: Path):
        if kind == "local":
            host = LocalHost(root)
        else:
            server = request.getfixturevalue("ssh_server")
            host = SSHHost(str(root), **server.host_options())
        hosts.append(host)
        return host

    yield make
    for host in hosts:
        host.close()


@pytest.fixture
def host(make_host, root):
    return make_host(root)


@pytest.fixture
def ssh_host(ssh_server, root):
    """For what only SSHHost has to get right: a shell on the far side, a tunnel."""
    with SSHHost(str(root), **ssh_server.host_options()) as host:
        yield host


def new_key(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)


def markers(tmp_path: Path) -> list[str]:
    return sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("pwned"))


# -- run -------------------------------------------------------------------------------------


def test_run_passes_every_argument_literally(host, tmp_path):
    marker = tmp_path / "pwned"
    words = [w.format(marker=marker) for w in NASTY]
    result = host.run(["printf", r"%s\0", *words])
    assert result.stdout.split("\0")[:-1] == words
    assert markers(tmp_path) == []


def test_run_in_a_folder_with_an_environment(host, root, tmp_path):
    host.mkdir("work dir $(x)")
    value = f"a b $(touch {tmp_path}/pwned) 'q'\nline two"
    result = host.run(
        ["sh", "-c", 'pwd; printf %s "$PONY_VALUE"'],
        cwd=host.path("work dir $(x)"),
        env={"PONY_VALUE": value},
    )
    assert result.stdout == f"{root}/work dir $(x)\n{value}"
    assert markers(tmp_path) == []


def test_ssh_run_keeps_environment_values_off_the_command_line(ssh_host):
    """The remote shell's command line is in every user's `ps`: a wrangler password passed
    in the environment once was. Values go through the command's stdin instead."""
    secret = "wrangler pw 'ü'\nsecond line\n"
    command, stdin = ssh_host._command(["printenv", "PONY_SECRET"], None, {"PONY_SECRET": secret})
    assert "wrangler pw" not in command and "second line" not in command
    assert stdin is not None and "wrangler pw" in stdin
    result = ssh_host.run(
        ["sh", "-c", 'printf %s "$PONY_SECRET"; printf %s "$OTHER"'],
        env={"PONY_SECRET": secret, "OTHER": "/after"},
    )
    assert result.stdout == secret + "/after"


def test_commands_create_files_for_their_owner_alone(host, root):
    host.run(["sh", "-c", "echo riders > data.csv; mkdir lists"], cwd=host.path())
    assert stat.S_IMODE((root / "data.csv").stat().st_mode) == 0o600
    assert stat.S_IMODE((root / "lists").stat().st_mode) == 0o700


def test_run_raises_with_the_output_when_asked_to_check(host):
    script = "echo to stdout; echo to stderr >&2; exit 3"
    with pytest.raises(HostError) as raised:
        host.run(["sh", "-c", script])
    assert "exit code 3" in str(raised.value)
    assert "to stdout" in str(raised.value) and "to stderr" in str(raised.value)

    result = host.run(["sh", "-c", script], check=False)
    assert (result.returncode, result.stdout, result.stderr) == (3, "to stdout\n", "to stderr\n")


def test_run_shows_each_line_as_it_comes(host):
    lines = []
    result = host.run(["sh", "-c", "echo one; echo two; printf three"], echo=lines.append)
    assert lines == ["one\n", "two\n", "three"]
    assert result.stdout == "one\ntwo\nthree"


def test_ssh_run_refuses_an_environment_name_the_shell_would_run(ssh_host, tmp_path):
    # LocalHost hands its environment to execve as a dict: no shell parses the names.
    with pytest.raises(HostError, match="not a valid environment variable name"):
        ssh_host.run(["true"], env={f"X=1 touch {tmp_path}/pwned;Y": "1"})
    assert markers(tmp_path) == []


def test_ssh_run_timeout_is_a_host_error(ssh_host):
    # Without the timeout the command would run ten minutes: pytest-timeout would fail the test.
    with pytest.raises(HostError, match="did not finish within 0.5 s"):
        ssh_host.run(["sleep", "600"], timeout=0.5)


# -- paths -----------------------------------------------------------------------------------

OUTSIDE = [
    "../escaped",
    "a/../../escaped",
    "./a/./../../escaped",
    "{tmp}/escaped",
    "{root}/../escaped",
    # A sibling whose name starts with the root's: a string-prefix check would let it through.
    "{root}-sibling/escaped",
    "/etc/passwd",
]

OPERATIONS = {
    "run cwd": lambda h, p: h.run(["touch", "made-by-run"], cwd=p),
    "exists": lambda h, p: h.exists(p),
    "is_dir": lambda h, p: h.is_dir(p),
    "read_text": lambda h, p: h.read_text(p),
    "write_text": lambda h, p: h.write_text(p, "x"),
    "append_line": lambda h, p: h.append_line(p, "x"),
    "mkdir": lambda h, p: h.mkdir(p),
    "symlink": lambda h, p: h.symlink("/etc", p),
    "chmod": lambda h, p: h.chmod(p, 0o777),
    "remove": lambda h, p: h.remove(p),
    "rsync_to": lambda h, p: h.rsync_to(Path(__file__).parent, p, []),
}


@pytest.mark.parametrize("operation", OPERATIONS)
def test_paths_outside_the_root_are_refused(host, root, tmp_path, operation):
    (tmp_path / "escaped").write_text("keep me")
    for template in OUTSIDE:
        path = template.format(tmp=tmp_path, root=root)
        with pytest.raises(PathOutsideRoot):
            OPERATIONS[operation](host, path)
    assert (tmp_path / "escaped").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["escaped", root.name]
    assert list(root.iterdir()) == []


def test_ssh_refuses_a_path_before_connecting(ssh_server, root):
    """Nothing listens on this port: a refusal proves the path was checked before any
    connection or command."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    host = SSHHost(str(root), **{**ssh_server.host_options(), "port": closed_port})
    for operation in OPERATIONS.values():
        with pytest.raises(PathOutsideRoot):
            operation(host, "../escaped")
    with pytest.raises(HostError, match=f"127.0.0.1:{closed_port}"):
        host.exists("inside")


def test_path_joins_under_the_root(host, root):
    assert str(host.path("releases", "r1")) == f"{root}/releases/r1"
    with pytest.raises(PathOutsideRoot):
        host.path("..", "elsewhere")


# -- files -----------------------------------------------------------------------------------


def test_write_text_creates_folders_and_sets_the_mode(host, root):
    host.write_text("secrets/panel password", "correct horse\n", mode=0o400)
    target = root / "secrets" / "panel password"
    assert target.read_text() == "correct horse\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o400
    # Replacing a read-only file works: the new one is renamed over it.
    host.write_text("secrets/panel password", "battery staple\n", mode=0o600)
    assert host.read_text("secrets/panel password") == "battery staple\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert os.listdir(root / "secrets") == ["panel password"]
    assert host.read_text("missing") is None


def test_write_text_is_atomic(host, root):
    """A reader polling the file sees the old content or the new one, never a partial one."""
    contents = ["a" * 100_000, "b" * 100_000]
    target = root / "state.json"
    host.write_text("state.json", contents[0])
    seen, reading, stop = set(), threading.Event(), threading.Event()

    def read_forever():
        while not stop.is_set():
            seen.add(target.read_text())
            reading.set()

    reader = threading.Thread(target=read_forever)
    reader.start()
    try:
        reading.wait(5)
        for i in range(4):
            host.write_text("state.json", contents[(i + 1) % 2])
    finally:
        stop.set()
        reader.join()
    assert seen <= set(contents)
    assert os.listdir(root) == ["state.json"]


def test_append_line_adds_one_line_each_time(host, root):
    host.append_line("logs/releases.log", "first $(x) 'q'")
    host.append_line("logs/releases.log", "second\n")
    assert (root / "logs" / "releases.log").read_text() == "first $(x) 'q'\nsecond\n"


def test_mkdir_chmod_exists_is_dir(host, root):
    host.mkdir("releases/r 1", mode=0o750)
    assert stat.S_IMODE((root / "releases" / "r 1").stat().st_mode) == 0o750
    host.mkdir("releases/r 1")  # already there: fine
    assert host.is_dir("releases/r 1") and host.exists("releases/r 1")
    host.write_text("releases/r 1/run.sh", "#!/bin/sh\n")
    host.chmod("releases/r 1/run.sh", 0o755)
    assert stat.S_IMODE((root / "releases" / "r 1" / "run.sh").stat().st_mode) == 0o755
    assert host.exists("releases/r 1/run.sh") and not host.is_dir("releases/r 1/run.sh")
    assert not host.exists("nothing") and not host.is_dir("nothing")
    os.symlink("nowhere", root / "dangling")
    assert host.exists("dangling") and not host.is_dir("dangling")


def test_symlink_is_replaced_atomically(host, root):
    (root / "releases" / "a").mkdir(parents=True)
    (root / "releases" / "b $(x)").mkdir()
    host.symlink("releases/a", "current")
    assert os.readlink(root / "current") == "releases/a"

    missing, stop = [], threading.Event()

    def follow_forever():
        while not stop.is_set():
            try:
                os.readlink(root / "current")
            except FileNotFoundError:
                missing.append(True)

    reader = threading.Thread(target=follow_forever)
    reader.start()
    try:
        for i in range(4):
            host.symlink(["releases/b $(x)", "releases/a"][i % 2], "current")
    finally:
        stop.set()
        reader.join()
    assert missing == []
    assert os.readlink(root / "current") == "releases/a"
    # The old link pointed at a folder: the new link replaced it rather than landing inside.
    assert os.listdir(root / "releases" / "a") == []
    assert os.listdir(root / "releases" / "b $(x)") == []
    assert sorted(os.listdir(root)) == ["current", "releases"]


def test_remove(host, root):
    (root / "releases" / "r1" / "app").mkdir(parents=True)
    (root / "releases" / "r1" / "app" / "x.py").write_text("x")
    (root / "keep").mkdir()
    (root / "keep" / "file").write_text("kept")
    os.symlink(root / "keep", root / "link to keep")
    (root / "notes").write_text("n")

    host.remove("releases/r1")
    host.remove("link to keep")
    host.remove("notes")
    host.remove("never existed")
    assert sorted(os.listdir(root)) == ["keep", "releases"]
    assert (root / "keep" / "file").read_text() == "kept"

    for spelling in [str(root), ".", "", "releases/.."]:
        with pytest.raises(PathOutsideRoot):
            host.remove(spelling)
    assert (root / "keep" / "file").exists()


def test_missing_root_is_a_host_error(make_host, root):
    with pytest.raises(HostError, match="does not exist"):
        host = make_host(root / "not there")
        host.exists("anything")


# -- rsync -----------------------------------------------------------------------------------


def test_rsync_to_copies_with_excludes_and_deletes(host, root, tmp_path):
    source = tmp_path / "checkout"
    (source / "app" / "__pycache__").mkdir(parents=True)
    (source / "app" / "views.py").write_text("views")
    (source / "app" / "__pycache__" / "views.pyc").write_text("bytecode")
    (source / "var").mkdir()
    (source / "var" / "db.sqlite").write_text("local data")
    (source / "odd $(touch pwned) name.txt").write_text("odd")
    os.symlink("app/views.py", source / "link")
    dest = f"releases/r 1 $(touch {tmp_path}/pwned)"

    lines = []
    result = host.rsync_to(source, dest, ["__pycache__", "/var"], echo=lines.append)
    copy = root / "releases" / f"r 1 $(touch {tmp_path}/pwned)"
    assert (copy / "app" / "views.py").read_text() == "views"
    assert (copy / "odd $(touch pwned) name.txt").read_text() == "odd"
    assert os.readlink(copy / "link") == "app/views.py"
    assert not (copy / "app" / "__pycache__").exists()
    assert not (copy / "var").exists()
    assert any("sent" in line and "bytes" in line for line in lines)
    assert result.stdout == "".join(lines)
    assert markers(tmp_path) == [] and not (copy / "pwned").exists()

    (source / "odd $(touch pwned) name.txt").unlink()
    host.rsync_to(source, dest, ["__pycache__", "/var"])
    assert not (copy / "odd $(touch pwned) name.txt").exists()
    assert (copy / "app" / "views.py").exists()


def test_rsync_to_reports_a_failure(host, tmp_path):
    with pytest.raises(HostError, match="rsync"):
        host.rsync_to(tmp_path / "no such checkout", "releases/r1", [])


# -- reach -----------------------------------------------------------------------------------


class Echo(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self._answer(b"pony")

    def do_POST(self):
        self._answer(self.rfile.read(int(self.headers["Content-Length"])))

    def _answer(self, body: bytes):
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def http_port():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_reach_gives_a_local_port_to_the_hosts_loopback(host, kind, http_port):
    big = os.urandom(2_000_000)
    with host.reach(http_port) as port:
        if kind == "ssh":
            assert port != http_port  # through the tunnel, not straight to the server
        for _ in range(3):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as answer:
                assert answer.read() == b"pony"
        request = urllib.request.Request(f"http://127.0.0.1:{port}/", data=big, method="POST")
        with urllib.request.urlopen(request, timeout=20) as answer:
            assert answer.read() == big


def test_ssh_tunnel_survives_a_service_that_is_not_up_yet(ssh_host, http_port):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    with ssh_host.reach(closed_port) as port:
        with pytest.raises((urllib.error.URLError, ConnectionError)):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5)
    with ssh_host.reach(http_port) as port:
        with pytest.raises((urllib.error.URLError, ConnectionError)):
            urllib.request.urlopen(f"http://127.0.0.1:{closed_port}/", timeout=5)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as answer:
            assert answer.read() == b"pony"
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2)


# -- connecting over SSH ---------------------------------------------------------------------


def test_wrong_port_names_host_and_port(ssh_server, root):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    host = SSHHost(str(root), **{**ssh_server.host_options(), "port": closed_port})
    with pytest.raises(HostError, match=f"127.0.0.1:{closed_port}.*refused"):
        host.run(["true"])


def test_unknown_host_key_is_refused(ssh_server, root, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    host = SSHHost(str(root), **{**ssh_server.host_options(), "known_hosts": str(empty)})
    with pytest.raises(HostError, match=f"unknown .*host key.*{empty}"):
        host.run(["true"])
    assert empty.read_text() == ""  # not learnt on the way


def test_changed_host_key_is_refused(ssh_server, root, tmp_path):
    other = tmp_path / "other_key"
    new_key(other)
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(
        f"[127.0.0.1]:{ssh_server.port} {(tmp_path / 'other_key.pub').read_text()}"
    )
    host = SSHHost(str(root), **{**ssh_server.host_options(), "known_hosts": str(known_hosts)})
    with pytest.raises(HostError, match="does not match"):
        host.run(["true"])


def test_a_key_the_server_does_not_know_is_refused(ssh_server, root, tmp_path):
    stranger = tmp_path / "stranger"
    new_key(stranger)
    host = SSHHost(str(root), **{**ssh_server.host_options(), "key_filename": str(stranger)})
    with pytest.raises(HostError, match=f"authentication with {stranger} failed"):
        host.run(["true"])


def test_ssh_server_spec_round_trips(ssh_server, root):
    spec = parse_host_spec(ssh_server.host_spec)
    assert spec == HostSpec(ssh_server.user, "127.0.0.1", ssh_server.port)
    options = {"key_filename": ssh_server.key_filename, "known_hosts": ssh_server.known_hosts}
    with SSHHost.from_spec(str(root), ssh_server.host_spec, **options) as host:
        assert host.run(["id", "-un"]).stdout.strip() == ssh_server.user


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("pony@example.org:2222", HostSpec("pony", "example.org", 2222)),
        ("example.org", HostSpec(None, "example.org", 22)),
        ("deploy@10.0.0.5", HostSpec("deploy", "10.0.0.5", 22)),
        ("root@[::1]:2200", HostSpec("root", "::1", 2200)),
    ],
)
def test_parse_host_spec(spec, expected):
    assert parse_host_spec(spec) == expected


@pytest.mark.parametrize(
    "spec",
    ["", "pony@", ":22", "host:port", "host:0", "host:70000", "a b", "-oProxyCommand=x", "a@b@c"],
)
def test_parse_host_spec_refuses_nonsense(spec):
    with pytest.raises(HostError):
        parse_host_spec(spec)


def test_the_ssh_fixture_fails_loudly_without_sshd(monkeypatch):
    import tests.sshd

    monkeypatch.setattr(tests.sshd, "SSHD", "/nonexistent/sshd")
    with pytest.raises(pytest.fail.Exception, match="`make test` installs openssh-server"):
        tests.sshd._require_tools()
