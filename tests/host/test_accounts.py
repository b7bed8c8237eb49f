"""Accounts are isolated: each sees and touches only its own apps, websites and domains."""

import sqlite3

import pytest
import requests

from deploy.host.server import HostSettings, open_store
from deploy.remote.panel_client import Conflict, HostingAPI, NotFound
from tests.host.conftest import make_host, set_password

DOMAIN = "randopony.localhost"
IP = "127.0.0.1"
INTRUDER, INTRUDER_PASSWORD = "intruder", "another long password"


@pytest.fixture
def owner(api):
    """The first account, with production's app and website on it."""
    api.create_app("production_app")
    api.create_website("production", IP, False, [DOMAIN], [("production_app", "/")])
    return api


@pytest.fixture
def intruder(host) -> HostingAPI:
    assert set_password(host.root, INTRUDER, INTRUDER_PASSWORD).returncode == 0
    api = HostingAPI(host.panel_url)
    api.login(INTRUDER, INTRUDER_PASSWORD)
    return api


def test_each_account_lists_only_its_own(owner, intruder):
    assert intruder.list_apps() == [] and intruder.list_websites() == []
    intruder.create_app("intruder_app")
    intruder.create_website("intruder_site", IP, False, ["x.localhost"], [("intruder_app", "/")])
    assert [app.name for app in owner.list_apps()] == ["production_app"]
    assert [site.name for site in owner.list_websites()] == ["production"]
    assert [app.name for app in intruder.list_apps()] == ["intruder_app"]
    assert [site.name for site in intruder.list_websites()] == ["intruder_site"]


# Each call on the owner's app or website, and the message it gets for a name nobody has:
# the intruder is told exactly that, so it cannot tell the two apart.
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
def shared(tmp_path_factory):
    # One host for these refusals: none of them may change it anyway.
    host = make_host(tmp_path_factory.mktemp("accounts") / "host")
    assert set_password(host.root, INTRUDER, INTRUDER_PASSWORD).returncode == 0
    host.start()
    owner = host.api()
    owner.create_app("production_app")
    owner.create_website("production", IP, False, [DOMAIN], [("production_app", "/")])
    intruder = HostingAPI(host.panel_url)
    intruder.login(INTRUDER, INTRUDER_PASSWORD)
    yield host, owner, intruder
    host.stop()


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


def test_a_website_cannot_claim_another_accounts_domain(host, owner, intruder):
    intruder.create_app("intruder_app")
    with pytest.raises(Conflict, match=f"domain '{DOMAIN}' belongs to another account"):
        intruder.create_website("mine", IP, False, [DOMAIN], [("intruder_app", "/")])
    intruder.create_website("mine", IP, False, ["x.localhost"], [("intruder_app", "/")])
    with pytest.raises(Conflict, match="belongs to another account"):
        intruder.update_website("mine", IP, False, [DOMAIN.upper()], [("intruder_app", "/")])
    assert owner.website("production").subdomains == (DOMAIN,)
    assert intruder.website("mine").subdomains == ("x.localhost",)
    # Nor in the gap of a move, while the domain is attached to none of the owner's websites.
    owner.update_website("production", IP, False, [], [("production_app", "/")])
    with pytest.raises(Conflict, match="belongs to another account"):
        intruder.update_website("mine", IP, False, [DOMAIN], [("intruder_app", "/")])
    owner.create_website("production_r2", IP, False, [DOMAIN], [("production_app", "/")])
    assert owner.website("production_r2").subdomains == (DOMAIN,)


def test_only_the_holder_releases_held_writes(host, owner, intruder):
    assert owner.hold_writes("production", 60) == [DOMAIN]
    with pytest.raises(NotFound, match="no website named 'production'"):
        intruder.release_writes("production")
    assert owner.release_writes("production") == [DOMAIN]


def test_the_same_name_cannot_be_taken_twice(owner, intruder):
    # One namespace per host (an app's name is its directory); the answer names no owner.
    with pytest.raises(Conflict, match="an app named 'production_app' already exists"):
        intruder.create_app("production_app")
    with pytest.raises(Conflict, match="a website named 'production' already exists"):
        intruder.create_website("production", IP, False, [], [])


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
