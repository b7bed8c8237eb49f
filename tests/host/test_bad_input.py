"""Every bad call gets a Fault that names the problem, and changes nothing."""

import xmlrpc.client

import pytest
import requests

from deploy.remote.panel_client import (
    Conflict,
    FaultCode,
    HostingAPI,
    InUse,
    InvalidInput,
    NotFound,
    SessionInvalid,
)

DOMAIN = "randopony.localhost"
IP = "127.0.0.1"
ROOT_APP = [("existing_app", "/")]


@pytest.fixture(scope="module", autouse=True)
def existing(shared_api):
    # What the bad calls name, made once for the module (on the host's first account): none of
    # these calls may change it anyway.
    api = shared_api
    api.create_app("existing_app")
    api.create_app("spare_app")
    api.create_website("existing", IP, False, [DOMAIN], ROOT_APP)
    api.create_website("other", IP, False, ["other.localhost"], [("spare_app", "/")])


BAD_CALLS = [
    ("create_app", ("Bad",), InvalidInput, "invalid app name 'Bad'"),
    ("create_app", ("1abc",), InvalidInput, "invalid app name"),
    ("create_app", ("a-b",), InvalidInput, "invalid app name"),
    ("create_app", ("../etc",), InvalidInput, "invalid app name"),
    ("create_app", ("existing_app",), Conflict, "an app named 'existing_app' already exists"),
    ("create_app", ("new_app", "php74"), InvalidInput, "unknown app type 'php74'"),
    ("create_app", ("new_app", "custom_app_with_port", "yes"), InvalidInput, "autostart"),
    ("delete_app", ("ghost",), NotFound, "no app named 'ghost'"),
    ("delete_app", ("existing_app",), InUse, "used by website(s) existing"),
    ("app_answers", ("ghost",), NotFound, "no app named 'ghost'"),
    ("create_website", ("existing", IP, False, [], ROOT_APP), Conflict, "already exists"),
    ("create_website", ("New", IP, False, [], ROOT_APP), InvalidInput, "invalid website name"),
    ("create_website", ("new", IP, False, [DOMAIN], ROOT_APP), Conflict, "already attached"),
    ("create_website", ("new", IP, False, ["bad_domain!"], ROOT_APP), InvalidInput, "domain"),
    ("create_website", ("new", IP, False, ["-x.localhost"], ROOT_APP), InvalidInput, "domain"),
    ("create_website", ("new", IP, False, ["a..localhost"], ROOT_APP), InvalidInput, "domain"),
    ("create_website", ("new", IP, False, ["a" * 64 + ".localhost"], ROOT_APP), InvalidInput, ""),
    ("create_website", ("new", IP, False, ["x.localhost"] * 2, ROOT_APP), InvalidInput, "twice"),
    ("create_website", ("new", IP, False, [], [("ghost", "/")]), NotFound, "no app named"),
    ("create_website", ("new", IP, False, [], [("spare_app", "blog")]), InvalidInput, "absolute"),
    ("create_website", ("new", IP, False, [], [("spare_app", "/a/../b")]), InvalidInput, "plain"),
    (
        "create_website",
        ("new", IP, False, [], [("spare_app", "/a"), ("existing_app", "/a/")]),
        InvalidInput,
        "used twice",
    ),
    ("create_website", ("new", IP, False, [], [("spare_app",)]), InvalidInput, "[app_name, path]"),
    ("create_website", ("new", "10.1.2.3", False, [], ROOT_APP), InvalidInput, "unknown ip"),
    ("create_website", ("new", IP, True, [], ROOT_APP), InvalidInput, "plain HTTP"),
    ("update_website", ("ghost", IP, False, [], ROOT_APP), NotFound, "no website named 'ghost'"),
    (
        "update_website",
        ("existing", IP, False, [DOMAIN, "other.localhost"], ROOT_APP),
        Conflict,
        "'other.localhost' is already attached to website 'other'",
    ),
    ("update_website", ("existing", IP, False, [DOMAIN], [("ghost", "/")]), NotFound, "ghost"),
    ("delete_website", ("ghost", IP), NotFound, "no website named 'ghost'"),
    ("delete_website", ("existing", "10.1.2.3"), NotFound, "not on '10.1.2.3'"),
    ("hold_writes", ("ghost",), NotFound, "no website named 'ghost'"),
    ("hold_writes", ("existing", -1), InvalidInput, "seconds"),
]


@pytest.mark.parametrize(
    ("method", "args", "error", "message"),
    BAD_CALLS,
    ids=[f"{call[0]}-{index}" for index, call in enumerate(BAD_CALLS)],
)
def test_bad_call_is_refused_and_changes_nothing(
    shared_host, shared_api, method, args, error, message
):
    api = shared_api
    apps, websites = api.list_apps(), api.list_websites()
    with pytest.raises(error) as refused:
        getattr(api, method)(*args)
    assert message in refused.value.message
    assert api.list_apps() == apps
    assert api.list_websites() == websites
    # And the router still sends the domain where it did.
    answer = requests.get(shared_host.router_url, headers={"Host": DOMAIN}, timeout=5)
    assert answer.status_code == 502  # the app is not started: the route is unchanged


def raw(host):
    return xmlrpc.client.ServerProxy(host.panel_url)


def test_unknown_session(shared_host, shared_api):
    with pytest.raises(SessionInvalid, match="unknown or expired session"):
        HostingAPI(shared_host.panel_url)._call("list_apps", "not-a-session")
    with pytest.raises(xmlrpc.client.Fault) as refused:
        raw(shared_host).create_app("nope", "new_app", "custom_app_with_port", False, "", False)
    assert refused.value.faultCode == FaultCode.SESSION
    assert "new_app" not in [app.name for app in shared_api.list_apps()]


def test_subdomains_must_be_a_list(shared_host, shared_api):
    session = shared_api.session_id
    with pytest.raises(xmlrpc.client.Fault, match="subdomains must be a list of domain names"):
        raw(shared_host).create_website(session, "new", IP, False, DOMAIN, ["spare_app", "/"])
    assert "new" not in [site.name for site in shared_api.list_websites()]


def test_wrong_argument_count_and_unknown_method(shared_host, shared_api):
    session = shared_api.session_id
    with pytest.raises(xmlrpc.client.Fault) as refused:
        raw(shared_host).create_app(session, "new_app")
    assert refused.value.faultCode == FaultCode.INVALID
    assert "create_app takes (session_id, name, type, autostart" in refused.value.faultString
    with pytest.raises(xmlrpc.client.Fault) as refused:
        raw(shared_host).create_email(session, "x")
    assert refused.value.faultCode == FaultCode.UNKNOWN_METHOD
    assert "unknown method 'create_email'" in refused.value.faultString


def test_a_body_that_is_not_xml_rpc(shared_host):
    answer = requests.post(shared_host.panel_url, data=b"<not xml-rpc", timeout=5)
    fault = xmlrpc.client.loads
    with pytest.raises(xmlrpc.client.Fault, match="not an XML-RPC call"):
        fault(answer.content)


def fault_of(answer) -> xmlrpc.client.Fault:
    assert answer.status_code == 200, answer.text
    with pytest.raises(xmlrpc.client.Fault) as refused:
        xmlrpc.client.loads(answer.content)
    return refused.value


def test_xml_with_a_doctype_is_refused_before_any_entity_is_expanded(shared_host, shared_api):
    session = shared_api.session_id
    # The call without its XML declaration, naming its app through an entity.
    call = xmlrpc.client.dumps((session, "&name;"), "create_app").replace("&amp;", "&")
    call = call.split("?>", 1)[1]
    small = '<!DOCTYPE methodCall [<!ENTITY name "doctype_app">]>' + call
    fault = fault_of(requests.post(shared_host.panel_url, data=small, timeout=5))
    assert (fault.faultCode, fault.faultString) == (
        FaultCode.INVALID,
        "XML with a DOCTYPE or entities is refused",
    )
    # The amplification that made a 1 MiB call grow to hundreds of megabytes, cut short.
    laughs = "".join(f'<!ENTITY l{n} "{f"&l{n - 1};" * 10}">' for n in range(1, 10))
    bomb = f'<!DOCTYPE m [<!ENTITY l0 "lol">{laughs}]>' + call.replace("&name;", "&l9;")
    fault = fault_of(requests.post(shared_host.panel_url, data=bomb, timeout=5))
    assert fault.faultString == "XML with a DOCTYPE or entities is refused"
    assert "doctype_app" not in [app.name for app in shared_api.list_apps()]


def test_a_body_over_one_mebibyte_is_refused(shared_host, shared_api):
    session = shared_api.session_id
    big = xmlrpc.client.dumps(
        (session, "big_app", "custom_app_with_port", False, "x" * 1024 * 1024, False), "create_app"
    )
    for body in (big.encode(), iter([big.encode()])):  # with a length, and chunked without one
        fault = fault_of(requests.post(shared_host.panel_url, data=body, timeout=5))
        assert fault.faultCode == FaultCode.INVALID
        assert fault.faultString == "the request body is larger than 1048576 bytes; refused"
    assert "big_app" not in [app.name for app in shared_api.list_apps()]
