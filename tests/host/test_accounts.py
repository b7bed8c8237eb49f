"""Accounts are isolated: each sees and touches only its own apps, websites and domains.

The tests share one host; each makes its apps, websites, domains and intruding account under
names of its own (see tests/host/conftest.py), so none sees another's."""

import sqlite3

import pytest
import requests

from deploy.host.server import HostSettings, open_store
from deploy.remote.panel_client import Conflict, HostingAPI, NotFound
from tests.host.conftest import Names, make_host, set_password

DOMAIN = "randopony.localhost"
IP = "127.0.0.1"
INTRUDER, INTRUDER_PASSWORD = "intruder", "another long password"


@pytest.fixture
def domain(names) -> str:
    return names.domain()


@pytest.fixture
def owner(shared_api, names, domain):
    """The shared host's first account, with the test's production app and website on it."""
    shared_api.create_app(names("production_app"))
    shared_api.create_website(
        names("production"), IP, False, [domain], [(names("production_app"), "/")]
    )
    return shared_api


@pytest.fixture
def intruder(shared_host, names) -> HostingAPI:
    """An account of the test's own."""
    return shared_host.add_account(names(INTRUDER), INTRUDER_PASSWORD)


def test_each_account_lists_only_its_own(owner, intruder, names):
    assert intruder.list_apps() == [] and intruder.list_websites() == []
    intruder.create_app(names("intruder_app"))
    intruder.create_website(
        names("intruder_site"), IP, False, [names.domain("x")], [(names("intruder_app"), "/")]
    )
    # The owner has other tests' apps and websites as well, but none of the intruder's.
    owners_apps = [app.name for app in owner.list_apps()]
    owners_websites = [site.name for site in owner.list_websites()]
    assert names("production_app") in owners_apps and names("intruder_app") not in owners_apps
    assert names("production") in owners_websites
    assert names("intruder_site") not in owners_websites
    assert [app.name for app in intruder.list_apps()] == [names("intruder_app")]
    assert [site.name for site in intruder.list_websites()] == [names("intruder_site")]


# Each call on the owner's app or website, and the message it gets for a name nobody has:
# the intruder is told exactly that, so it cannot tell the two apart. The owner's names are
# this module's alone (the other tests' names all have a prefix).
FOREIGN_CALLS = [
    ("delete_app", ("production_app",), "no app named 'production_app'"),
    ("app_answers", ("production_app",), "no app named 'production_app'"),
    ("wait_app_idle", ("production_app", 0), "no app named 'production_app'"),
    ("delete_website", ("production", IP), "no website named 'production'"),
    ("update_website", ("production", IP, False, ["x.localhost"], []), "no website named"),
    ("hold_writes", ("production", 5), "no website named 'production'"),
    ("release_writes", ("production",), "no website named 'production'"),
    ("held_requests", ("production",), "no website named 'production'"),
    ("held_requests", (DOMAIN,), f"no website or domain named '{DOMAIN}'"),
    ("create_website", ("mine", IP, False, [], [("production_app", "/")]), "no app named"),
]


def ghostly(value):
    """The same value, naming what nobody has instead of what the owner has."""
    if isinstance(value, str):
        return value.replace(DOMAIN, "ghost.localhost").replace("production", "ghost")
    if isinstance(value, list | tuple):
        return type(value)(ghostly(item) for item in value)
    return value


@pytest.fixture(scope="module")
def shared(shared_host):
    # One owner and one intruder for these refusals: none of them may change anything anyway.
    accounts = Names.fresh()
    owner = shared_host.add_account(accounts("owner"))
    owner.create_app("production_app")
    owner.create_website("production", IP, False, [DOMAIN], [("production_app", "/")])
    intruder = shared_host.add_account(accounts(INTRUDER), INTRUDER_PASSWORD)
    return shared_host, owner, intruder


@pytest.mark.parametrize(
    ("method", "args", "message"),
    FOREIGN_CALLS,
    ids=[f"{call[0]}-{index}" for index, call in enumerate(FOREIGN_CALLS)],
)
def test_another_accounts_app_or_website_is_as_good_as_missing(shared, method, args, message):
    host, owner, intruder = shared
    apps, websites = owner.list_apps(), owner.list_websites()
    with pytest.raises(NotFound) as refused:
        getattr(intruder, method)(*args)
    assert message in refused.value.message
    with pytest.raises(NotFound) as missing:
        getattr(intruder, method)(*ghostly(args))
    assert missing.value.message == ghostly(refused.value.message)
    assert "production" not in str(intruder.list_apps() + intruder.list_websites())
    assert owner.list_apps() == apps and owner.list_websites() == websites
    # Nothing is held either: the owner's release finds nothing to let go.
    assert owner.release_writes("production") == []
    assert (host.root / "webapps" / "production_app").is_dir()
    answer = requests.get(host.router_url, headers={"Host": DOMAIN}, timeout=5)
    assert answer.status_code == 502  # still routed to production_app, which is not running


def test_a_website_cannot_claim_another_accounts_domain(owner, intruder, names, domain):
    production, production_app = names("production"), names("production_app")
    mine, intruder_app = names("mine"), names("intruder_app")
    intruder.create_app(intruder_app)
    with pytest.raises(Conflict, match=f"domain '{domain}' belongs to another account"):
        intruder.create_website(mine, IP, False, [domain], [(intruder_app, "/")])
    intruder.create_website(mine, IP, False, [names.domain("x")], [(intruder_app, "/")])
    with pytest.raises(Conflict, match="belongs to another account"):
        intruder.update_website(mine, IP, False, [domain.upper()], [(intruder_app, "/")])
    assert owner.website(production).subdomains == (domain,)
    assert intruder.website(mine).subdomains == (names.domain("x"),)
    # Nor in the gap of a move, while the domain is attached to none of the owner's websites.
    owner.update_website(production, IP, False, [], [(production_app, "/")])
    with pytest.raises(Conflict, match="belongs to another account"):
        intruder.update_website(mine, IP, False, [domain], [(intruder_app, "/")])
    owner.create_website(names("production_r2"), IP, False, [domain], [(production_app, "/")])
    assert owner.website(names("production_r2")).subdomains == (domain,)


def test_only_the_holder_releases_held_writes(owner, intruder, names, domain):
    assert owner.hold_writes(names("production"), 60) == [domain]
    with pytest.raises(NotFound, match=f"no website named '{names('production')}'"):
        intruder.release_writes(names("production"))
    assert owner.release_writes(names("production")) == [domain]


def test_the_same_name_cannot_be_taken_twice(owner, intruder, names):
    # One namespace per host (an app's name is its directory); the answer names no owner.
    with pytest.raises(Conflict, match=f"an app named '{names('production_app')}' already exists"):
        intruder.create_app(names("production_app"))
    with pytest.raises(Conflict, match=f"a website named '{names('production')}' already exists"):
        intruder.create_website(names("production"), IP, False, [], [])


OLD_SCHEMA = """
CREATE TABLE accounts (username TEXT PRIMARY KEY, password_hash TEXT NOT NULL);
CREATE TABLE apps (
    id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL UNIQUE, type TEXT NOT NULL,
    autostart INTEGER NOT NULL, extra_info TEXT NOT NULL, open_port INTEGER NOT NULL,
    port INTEGER NOT NULL UNIQUE
);
CREATE TABLE websites (
    id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL UNIQUE, ip TEXT NOT NULL,
    https INTEGER NOT NULL, subdomains TEXT NOT NULL, website_apps TEXT NOT NULL
);
INSERT INTO apps (name, type, autostart, extra_info, open_port, port)
    VALUES ('old_app', 'custom_app_with_port', 0, '', 0, 29999);
INSERT INTO websites (name, ip, https, subdomains, website_apps)
    VALUES ('old_site', '127.0.0.1', 0, '["randopony.localhost"]', '[["old_app", "/"]]');
"""


def old_store(root):
    """A panel store as the releases before accounts owned anything wrote it."""
    path = root / "panel" / "panel.sqlite"
    path.parent.mkdir(parents=True)
    with sqlite3.connect(path) as db:
        db.executescript(OLD_SCHEMA)
    return path


def test_an_old_store_is_adopted_by_its_first_account(tmp_path):
    root = tmp_path / "host"
    old_store(root)
    # The first account is created after the store was opened once and left without owners.
    open_store(HostSettings(root=root)).close()
    host = make_host(root)  # creates the first account, "pony"
    assert set_password(root, INTRUDER, INTRUDER_PASSWORD).returncode == 0
    host.start()
    try:
        first = host.api()
        assert [app.name for app in first.list_apps()] == ["old_app"]
        assert first.website("old_site").subdomains == (DOMAIN,)
        intruder = HostingAPI(host.panel_url)
        intruder.login(INTRUDER, INTRUDER_PASSWORD)
        assert intruder.list_apps() == [] and intruder.list_websites() == []
        with pytest.raises(NotFound):
            intruder.delete_app("old_app")
        intruder.create_app("intruder_app")
        with pytest.raises(Conflict, match="belongs to another account"):
            intruder.create_website("mine", IP, False, [DOMAIN], [("intruder_app", "/")])
        answer = requests.get(host.router_url, headers={"Host": DOMAIN}, timeout=5)
        assert answer.status_code == 502  # routed to old_app as before (not running)
    finally:
        host.stop()


def test_an_old_store_with_accounts_goes_to_the_oldest(tmp_path):
    root = tmp_path / "host"
    path = old_store(root)
    with sqlite3.connect(path) as db:
        db.executemany(
            "INSERT INTO accounts (username, password_hash) VALUES (?, 'x')",
            [("zed_first",), ("alice_second",)],
        )
    store = open_store(HostSettings(root=root))
    try:
        assert [a["name"] for a in store.list_apps("zed_first")] == ["old_app"]
        assert [s["name"] for s in store.list_websites("zed_first")] == ["old_site"]
        assert store.list_apps("alice_second") == []
    finally:
        store.close()
    # Opening it again changes nothing more.
    store = open_store(HostSettings(root=root))
    assert [a["name"] for a in store.list_apps("zed_first")] == ["old_app"]
    store.close()
