"""The panel's API as a third-party client calls it: `xmlrpc.client.ServerProxy`, Webfaction's
documented methods and argument order, nothing of this project's client.

The seed guide's "Webfaction Environment" set-up is done through it (the staging and production
sub-domains, a Pyramid app, a website mounting it at /), and every bad call gets a Fault that
says what is wrong and changes nothing. Each test has an account of its own on the module's
shared host, and domains no other test uses.
"""

from __future__ import annotations

import socket
import sqlite3
import subprocess
import time
import xmlrpc.client
from dataclasses import dataclass

import pytest
import requests

from deploy.panel_wire import FaultCode
from tests.host.conftest import PASSWORD, USERNAME, make_host

ACCOUNT_KEYS = {"id", "username", "home", "web_server", "mail_server"}


@dataclass
class Client:
    """A third party's view: a ServerProxy and the session its login gave."""

    proxy: xmlrpc.client.ServerProxy
    session: str
    account: dict
    ip: str

    def state(self, webapps) -> tuple:
        """What a refused call must leave as it was: the account's lists and the apps' files."""
        return (
            self.proxy.list_domains(self.session),
            self.proxy.list_apps(self.session),
            self.proxy.list_websites(self.session),
            sorted(str(path.relative_to(webapps)) for path in webapps.rglob("*")),
        )


def connect(url: str, username: str, *login_args) -> Client:
    proxy = xmlrpc.client.ServerProxy(url)
    session, account = proxy.login(username, PASSWORD, *login_args)
    ip = next(entry["ip"] for entry in proxy.list_ips(session) if entry["is_main"])
    return Client(proxy, session, account, ip)


@pytest.fixture
def client(shared_host, own_api) -> Client:
    return connect(shared_host.panel_url, own_api.account["username"])


@pytest.fixture
def seed(names):
    """The seed guide's names, made the test's own: a staging domain on the host's domain and a
    production domain on the club's, each with the sub-domain "randopony"."""
    return {
        "staging_domain": f"{names.prefix}-bcrandonneur.example",
        "production_domain": f"{names.prefix}-randonneurs.example",
        "app": names("randopony2013r1"),
    }


def fault(call, *args) -> xmlrpc.client.Fault:
    with pytest.raises(xmlrpc.client.Fault) as raised:
        call(*args)
    message = raised.value.faultString
    assert "Traceback" not in message and 'File "' not in message
    return raised.value


def wait_for(condition, timeout: float = 60.0, what: str = "the condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"{what} did not come within {timeout} s")


def page(host, domain: str) -> requests.Response:
    return requests.get(host.router_url + "/", headers={"Host": domain}, timeout=10)


def answers(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except OSError:
        return False
    return True


def test_the_seed_environment_set_up_through_the_api(shared_host, client, seed):
    proxy, session = client.proxy, client.session
    staging_parent, production_parent, app_name = (
        seed["staging_domain"],
        seed["production_domain"],
        seed["app"],
    )
    staging = f"randopony.{staging_parent}"
    production = f"randopony.{production_parent}"

    # What a client learns first: the account, its machine, its ips, the app types.
    assert set(client.account) == ACCOUNT_KEYS
    assert isinstance(client.account["id"], int)
    (machine,) = proxy.list_machines(session)
    assert set(machine) == {"id", "name", "operating_system", "location"}
    assert client.account["web_server"] == machine["name"]
    assert [entry["machine"] for entry in proxy.list_ips(session)] == [machine["name"]]
    # Version 2 of Webfaction's login names the machine.
    again = connect(shared_host.panel_url, client.account["username"], machine["name"], 2)
    assert again.account == client.account
    types = {entry["name"]: entry for entry in proxy.list_app_types(session)}
    assert "Pyramid" in types["pyramid"]["label"]

    # 1. The staging and production sub-domains.
    created = proxy.create_domain(session, staging_parent, "randopony")
    assert (created["domain"], created["subdomains"]) == (staging_parent, ["randopony"])
    proxy.create_domain(session, production_parent, "randopony")

    # 2. A Pyramid app named for the release; the panel assigns its port.
    app = proxy.create_app(session, app_name, "pyramid", False, "", False)
    assert (app["name"], app["type"]) == (app_name, "pyramid")
    directory = shared_host.root / "webapps" / app_name
    assert (directory / "myapp" / "__init__.py").is_file()
    assert f"port = {app['port']}" in (directory / "myapp.ini").read_text()
    assert (directory / "bin" / "start").stat().st_mode & 0o111

    # 3. A website with the app's name, on the staging sub-domain, the app mounted at /.
    site = proxy.create_website(session, app_name, client.ip, False, [staging], [app_name, "/"])
    assert (site["subdomains"], site["website_apps"]) == ([staging], [[app_name, "/"]])

    domains = proxy.list_domains(session)
    assert [(d["domain"], d["subdomains"]) for d in domains] == [
        (staging_parent, ["randopony"]),
        (production_parent, ["randopony"]),
    ]
    assert all(isinstance(d["id"], int) for d in domains)
    websites = proxy.list_websites(session)
    assert [(w["name"], w["subdomains"], w["website_apps"]) for w in websites] == [
        (app_name, [staging], [[app_name, "/"]])
    ]
    assert production not in str(websites)

    # The template app's bin/start serves it at the staging domain; bin/stop ends it.
    try:
        subprocess.run([directory / "bin" / "start"], check=True, timeout=30)
        answer = wait_for(
            lambda: (r := page(shared_host, staging)).status_code == 200 and r,
            what="the template app's page",
        )
        assert "just created" in answer.text
    finally:
        subprocess.run([directory / "bin" / "stop"], check=True, timeout=60)
    assert not answers(app["port"])
    assert not (directory / "myapp.pid").exists()


def test_sub_domains_are_added_and_deleted_alone(client, names):
    proxy, session = client.proxy, client.session
    domain = f"{names.prefix}-club.example"
    proxy.create_domain(session, domain, "www")
    # Adding sub-domains to a domain is create_domain again; those it has are no error.
    grown = proxy.create_domain(session, domain.upper(), "Blog", "www", "staging")
    assert grown["subdomains"] == ["blog", "staging", "www"]
    assert proxy.delete_domain(session, domain, "www", "blog")["subdomains"] == ["www", "blog"]
    assert proxy.list_domains(session)[0]["subdomains"] == ["staging"]
    gone = proxy.delete_domain(session, domain)
    assert (gone["domain"], gone["subdomains"]) == (domain, ["staging"])
    assert proxy.list_domains(session) == []


def test_a_domain_goes_once_no_website_serves_it(client, names):
    proxy, session = client.proxy, client.session
    domain = f"{names.prefix}-club.example"
    proxy.create_domain(session, domain, "randopony")
    proxy.create_app(session, names("site"), "custom_app_with_port", False, "", False)
    site = [names("site"), "/"]
    proxy.create_website(session, names("site"), client.ip, False, [f"randopony.{domain}"], site)
    proxy.update_website(session, names("site"), client.ip, False, [domain], site)
    proxy.delete_domain(session, domain, "randopony")  # no longer served
    proxy.update_website(session, names("site"), client.ip, False, [], site)
    proxy.delete_domain(session, domain)
    assert proxy.list_domains(session) == []


@pytest.fixture
def existing(shared_host, client, names):
    """What the bad calls name: a domain with a sub-domain served by a website, and a directory
    a deleted app left behind."""
    proxy, session = client.proxy, client.session
    domain = f"{names.prefix}-club.example"
    proxy.create_domain(session, domain, "randopony", "spare")
    proxy.create_app(session, names("app"), "custom_app_with_port", False, "", False)
    proxy.create_website(
        session, names("site"), client.ip, False, [f"randopony.{domain}"], [names("app"), "/"]
    )
    leftover = shared_host.root / "webapps" / names("leftover")
    leftover.mkdir(parents=True)
    (leftover / "RandoPony-production.sqlite").write_text("a release's data")
    return domain


def bad_calls(domain: str, names, ip: str) -> list[tuple[str, tuple, FaultCode, str]]:
    site, app = names("site"), [names("app"), "/"]
    served, spare = f"randopony.{domain}", f"spare.{domain}"
    return [
        # Websites serve only created domains.
        ("create_website", ("x", ip, False, ["nosuch.example"], app), FaultCode.NOT_FOUND,
         "domain 'nosuch.example' has not been created on this account: create it first "
         "with create_domain(session, 'nosuch.example')"),
        ("create_website", ("x", ip, False, [f"blog.{domain}"], app), FaultCode.NOT_FOUND,
         f"create_domain(session, '{domain}', 'blog')"),
        ("update_website", (site, ip, False, [served, "nosuch.example"], app),
         FaultCode.NOT_FOUND, "'nosuch.example' has not been created"),
        # Wrong argument counts and types.
        ("create_website", ("x",), FaultCode.INVALID,
         "create_website takes (session_id, name, ip, https, subdomains, *site_apps)"),
        ("create_website", ("x", ip, False, spare, app), FaultCode.INVALID,
         "subdomains must be a list"),
        ("create_website", ("x", ip, False, [spare], names("app"), "/"), FaultCode.INVALID,
         "each site app must be [app_name, path]"),
        ("create_domain", (), FaultCode.INVALID, "create_domain takes (session_id, domain, "),
        ("create_domain", (["a.example"],), FaultCode.INVALID, "must be a string"),
        ("create_domain", ("b.example", 7), FaultCode.INVALID, "sub-domain 7 must be a string"),
        ("delete_domain", (), FaultCode.INVALID, "delete_domain takes (session_id, domain, "),
        ("list_domains", ("extra",), FaultCode.INVALID, "list_domains takes (session_id)"),
        ("list_machines", ("extra",), FaultCode.INVALID, "list_machines takes (session_id)"),
        # Bad names.
        ("create_domain", ("bad_domain!.example",), FaultCode.INVALID, "invalid domain name"),
        ("create_domain", ("-x.example",), FaultCode.INVALID, "invalid domain name"),
        ("create_domain", ("a..example",), FaultCode.INVALID, "invalid domain name"),
        ("create_domain", ("example",), FaultCode.INVALID, "like example.org"),
        ("create_domain", ("c.example", "www\nx"), FaultCode.INVALID, "invalid sub-domain"),
        ("create_domain", ("c.example", "a" * 64), FaultCode.INVALID, "invalid sub-domain"),
        ("create_domain", ("c.example", "www."), FaultCode.INVALID, "invalid sub-domain"),
        ("create_domain", (domain, "ok", "-bad"), FaultCode.INVALID, "invalid sub-domain"),
        ("create_app", (names("x"), "pyramid_9", False, "", False), FaultCode.INVALID,
         "unknown app type 'pyramid_9'; this host offers: custom_app_with_port, pyramid"),
        # A Pyramid app's template never goes over files already there.
        ("create_app", (names("leftover"), "pyramid", False, "", False), FaultCode.CONFLICT,
         f"webapps/{names('leftover')} already holds files"),
        # A domain a website serves stays.
        ("delete_domain", (domain,), FaultCode.IN_USE,
         f"domain '{served}' is used by website '{site}': detach it from the website first"),
        ("delete_domain", (domain, "spare", "randopony"), FaultCode.IN_USE,
         f"is used by website '{site}'"),
        ("delete_domain", ("nosuch.example",), FaultCode.NOT_FOUND, "no domain named"),
        ("delete_domain", (domain, "nosuch"), FaultCode.NOT_FOUND,
         f"domain '{domain}' has no sub-domain 'nosuch'"),
    ]  # fmt: skip


def test_bad_calls_get_a_clear_fault_and_change_nothing(shared_host, client, existing, names):
    webapps = shared_host.root / "webapps"
    for method, args, code, message in bad_calls(existing, names, client.ip):
        before = client.state(webapps)
        refused = fault(getattr(client.proxy, method), client.session, *args)
        assert (refused.faultCode, method) == (code, method), refused.faultString
        assert message in refused.faultString, (method, args)
        assert client.state(webapps) == before, (method, args)
    assert page(shared_host, f"randopony.{existing}").status_code == 502  # still routed


def test_login_refuses_an_unknown_machine_or_version(shared_host, own_api):
    proxy = xmlrpc.client.ServerProxy(shared_host.panel_url)
    username = own_api.account["username"]
    refused = fault(proxy.login, username, PASSWORD, "Web500", 2)
    assert refused.faultCode == FaultCode.NOT_FOUND
    assert "no machine named 'Web500': this account has one" in refused.faultString
    refused = fault(proxy.login, username, PASSWORD, "", 3)
    assert (refused.faultCode, refused.faultString) == (
        FaultCode.INVALID,
        "unknown api_version 3: this panel speaks 1 and 2",
    )
    refused = fault(proxy.login, username, PASSWORD, "", 1, "extra")
    assert "login takes (username, password, machine=None, api_version=None)" in (
        refused.faultString
    )


def test_another_accounts_domains_are_theirs(shared_host, client, names):
    shared_host.add_account(names("other"))
    theirs = connect(shared_host.panel_url, names("other"))
    domain = f"{names.prefix}-club.example"
    client.proxy.create_domain(client.session, domain, "randopony")
    assert theirs.proxy.list_domains(theirs.session) == []
    webapps = shared_host.root / "webapps"
    before = client.state(webapps), theirs.state(webapps)
    for subdomains in ([], ["randopony"], ["www"]):
        refused = fault(theirs.proxy.create_domain, theirs.session, domain, *subdomains)
        assert refused.faultCode == FaultCode.CONFLICT
        assert "belongs to another account" in refused.faultString
    # Nor a domain under it, taken as a domain of its own.
    refused = fault(theirs.proxy.create_domain, theirs.session, f"www.{domain}")
    assert f"domain 'www.{domain}' belongs to another account" in refused.faultString
    # Another account's domain is answered like one that does not exist.
    refused = fault(theirs.proxy.delete_domain, theirs.session, domain)
    assert refused.faultString == f"no domain named '{domain}'"
    assert (client.state(webapps), theirs.state(webapps)) == before


# The panel store as the release before domains were created wrote it: the names an account's
# websites served, and had served, were its own ("domains"), and nothing else was needed.
PREVIOUS_STORE = """
CREATE TABLE accounts (username TEXT PRIMARY KEY, password_hash TEXT NOT NULL);
CREATE TABLE apps (
    id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL UNIQUE, type TEXT NOT NULL,
    autostart INTEGER NOT NULL, extra_info TEXT NOT NULL, open_port INTEGER NOT NULL,
    port INTEGER NOT NULL UNIQUE, owner TEXT
);
CREATE TABLE websites (
    id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL UNIQUE, ip TEXT NOT NULL,
    https INTEGER NOT NULL, subdomains TEXT NOT NULL, website_apps TEXT NOT NULL, owner TEXT
);
CREATE TABLE domains (name TEXT PRIMARY KEY, owner TEXT);
INSERT INTO apps (name, type, autostart, extra_info, open_port, port, owner)
    VALUES ('randopony2026r1', 'custom_app_with_port', 0, '', 0, 29998, 'pony');
INSERT INTO websites (name, ip, https, subdomains, website_apps, owner) VALUES (
    'randopony2026r1', '127.0.0.1', 0,
    '["randopony.randonneurs.example", "staging.randopony.randonneurs.example"]',
    '[["randopony2026r1", "/"]]', 'pony'
);
INSERT INTO domains (name, owner) VALUES
    ('randopony.randonneurs.example', 'pony'),
    ('staging.randopony.randonneurs.example', 'pony'),
    ('old-staging.randopony.randonneurs.example', 'pony');
"""


def test_a_previous_store_keeps_working_with_its_domains_created(tmp_path):
    root = tmp_path / "host"
    (root / "panel").mkdir(parents=True)
    with sqlite3.connect(root / "panel" / "panel.sqlite") as db:
        db.executescript(PREVIOUS_STORE)
    host = make_host(root)  # sets the first account's password: "pony", as the store has it
    host.start()
    try:
        client = connect(host.panel_url, USERNAME)
        proxy, session = client.proxy, client.session
        # What its websites serve (and the detached name it held) is created, grouped under
        # the shortest name.
        (domain,) = proxy.list_domains(session)
        assert (domain["domain"], domain["subdomains"]) == (
            "randopony.randonneurs.example",
            ["old-staging", "staging"],
        )
        assert page(host, "randopony.randonneurs.example").status_code == 502  # routed
        # The detached name is attached again with no create_domain, as before.
        app = ["randopony2026r1", "/"]
        names = ["randopony.randonneurs.example", "old-staging.randopony.randonneurs.example"]
        proxy.update_website(session, "randopony2026r1", client.ip, False, names, app)
        # Opened again, the store adopts nothing twice.
        host.restart()
        client = connect(host.panel_url, USERNAME)
        assert client.proxy.list_domains(client.session) == [domain]
    finally:
        host.stop()
