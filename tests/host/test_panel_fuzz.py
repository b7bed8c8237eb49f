"""Fuzzing every panel method: whatever the arguments (types, count, length, Unicode), the answer
is a clear Fault or a result, never an internal failure or a traceback, and a refused call
changes nothing: not the accounts' domains, apps and websites, not the webapps directory."""

import datetime
import xmlrpc.client

import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st

from deploy.panel_wire import FaultCode
from deploy.remote.panel_client import HostingAPI
from tests.conftest import fuzz_settings
from tests.host.conftest import USERNAME, make_host, set_password

OTHER, OTHER_PASSWORD = "other", "another long password"
IP = "127.0.0.1"
METHODS = [
    "app_answers",
    "create_app",
    "create_domain",
    "create_website",
    "delete_app",
    "delete_domain",
    "delete_website",
    "held_requests",
    "hold_writes",
    "list_app_types",
    "list_apps",
    "list_domains",
    "list_ips",
    "list_machines",
    "list_websites",
    "login",
    "release_writes",
    "system.listMethods",
    "update_website",
    "wait_app_idle",
]
# Names that exist (the caller's and the other account's), so calls get past the first check.
KNOWN = [
    USERNAME,
    OTHER,
    "fuzz_app",
    "fuzz_site",
    "fuzz.localhost",
    "other_app",
    "other_site",
    "other.localhost",
    IP,
    "custom_app_with_port",
    "pyramid",
    "localhost",
    "staging",
    "/",
    "/blog",
]
FUZZ = fuzz_settings(50)


@pytest.fixture(scope="module")
def panel(tmp_path_factory):
    # A host of the module's own: guessed logins must not lock the fixture out of its own panel
    # (nor other tests out of theirs), and the state compared is the whole host's.
    host = make_host(tmp_path_factory.mktemp("fuzz") / "host", "--max-login-failures", "1000000")
    assert set_password(host.root, OTHER, OTHER_PASSWORD).returncode == 0
    try:
        host.start()
        mine = host.api()
        mine.create_app("fuzz_app")
        mine.create_website("fuzz_site", IP, False, ["fuzz.localhost"], [("fuzz_app", "/")])
        theirs = HostingAPI(host.panel_url)
        theirs.login(OTHER, OTHER_PASSWORD)
        theirs.create_app("other_app")
        theirs.create_website("other_site", IP, False, ["other.localhost"], [("other_app", "/")])
        yield host, mine, theirs
    finally:
        host.stop()


def state(host, mine, theirs):
    return (
        mine.list_domains(),
        mine.list_apps(),
        mine.list_websites(),
        theirs.list_domains(),
        theirs.list_apps(),
        theirs.list_websites(),
        sorted(path.name for path in (host.root / "webapps").iterdir()),
    )


text = st.one_of(st.sampled_from(KNOWN), st.text(max_size=30), st.text(min_size=200))
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**31), 2**31 - 1),
    st.floats(),
    text,
    st.binary(max_size=40).map(xmlrpc.client.Binary),
    st.datetimes(datetime.datetime(1, 1, 1)).map(xmlrpc.client.DateTime),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def post(url: str, body: bytes) -> requests.Response:
    answer = requests.post(url, data=body, headers={"Content-Type": "text/xml"}, timeout=30)
    assert answer.status_code == 200, answer.text
    return answer


def check_answer(answer: requests.Response) -> xmlrpc.client.Fault | None:
    """The answer is a result or a clear Fault; returns the Fault."""
    try:
        xmlrpc.client.loads(answer.content, use_builtin_types=True)
    except xmlrpc.client.Fault as fault:
        assert fault.faultCode in set(FaultCode) - {FaultCode.INTERNAL}, fault
        assert "Traceback" not in fault.faultString and 'File "' not in fault.faultString
        return fault
    return None


def test_every_method_is_fuzzed(panel):
    host, _, _ = panel
    assert xmlrpc.client.ServerProxy(host.panel_url).system.listMethods() == METHODS


@pytest.mark.parametrize("method", METHODS)
def test_any_arguments_get_a_clear_answer_and_a_refusal_changes_nothing(panel, method):
    host, mine, theirs = panel
    logged = len(host.log.read_text())

    @FUZZ
    @given(data=st.data())
    def call(data):
        first = st.one_of(st.just(mine.session_id), values)
        args = [data.draw(first)] if method not in ("login", "system.listMethods") else []
        args += data.draw(st.lists(values, max_size=8))
        try:
            body = xmlrpc.client.dumps(tuple(args), method, allow_none=True).encode()
        except (OverflowError, TypeError):
            return  # not a call any client could send
        before = state(host, mine, theirs)
        fault = check_answer(post(host.panel_url, body))
        if fault is not None:
            assert state(host, mine, theirs) == before, (method, args, fault)

    call()
    assert "Traceback" not in host.log.read_text()[logged:]


@FUZZ
@given(
    body=st.one_of(
        st.binary(max_size=200),
        st.text(max_size=200).map(str.encode),
        st.builds(
            lambda method, junk: (
                f"<?xml version='1.0'?><methodCall><methodName>{method}</methodName>"
                f"<params>{junk}</params></methodCall>"
            ).encode(),
            st.sampled_from(METHODS),
            st.text(alphabet="<>/paramvluestingbod&;x ", max_size=60),
        ),
    )
)
def test_any_body_gets_a_clear_answer(panel, body):
    host, mine, theirs = panel
    before = state(host, mine, theirs)
    check_answer(post(host.panel_url, body))
    assert state(host, mine, theirs) == before
