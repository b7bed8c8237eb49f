"""The seed workflow end to end: account, apps, a website, a switch, a restart.

The test that restarts the host has one of its own; the others share one, each with names of
its own (and an account of its own for the one that changes its password)."""

import requests

from deploy.remote.panel_client import App, HostingAPI, Website
from tests.host.conftest import set_password

DOMAIN = "randopony.localhost"


def fetch(host, path="/", domain=DOMAIN, **kwargs) -> requests.Response:
    return requests.get(
        host.router_url + path,
        headers={"Host": f"{domain}:{host.router_port}"},
        timeout=10,
        **kwargs,
    )


def test_website_switches_apps_and_survives_a_restart(host, api, start_app):
    # A host of its own: it restarts it.
    assert api.account["username"] == "pony"
    assert api.account["home"] == str(host.root.resolve())
    assert api.list_app_types() == ["custom_app_with_port", "pyramid"]
    ip = api.list_ips()[0]

    first = api.create_app("randopony2026r1")
    second = api.create_app("randopony2026r2")
    assert first.port != second.port
    assert (host.root / "webapps" / "randopony2026r1").is_dir()
    start_app("r1", first.port)
    start_app("r2", second.port)
    assert api.app_answers("randopony2026r1")

    site = api.create_website("randopony", ip, False, [DOMAIN], [("randopony2026r1", "/")])
    assert site == Website("randopony", ip, False, (DOMAIN,), (("randopony2026r1", "/"),))
    answer = fetch(host, "/events?club=bc")
    assert answer.status_code == 200
    assert answer.json()["app"] == "r1"
    assert answer.json()["path"] == "/events"
    assert answer.json()["query"] == "club=bc"

    api.update_website("randopony", ip, False, [DOMAIN], [("randopony2026r2", "/")])
    assert fetch(host).json()["app"] == "r2"

    apps_before, sites_before = api.list_apps(), api.list_websites()
    host.restart()
    again = host.api()
    assert again.list_apps() == apps_before
    assert again.list_websites() == sites_before
    assert fetch(host).json()["app"] == "r2"


def test_apps_mounted_on_paths_see_paths_below_their_mount(
    shared_host, shared_api, names, start_app
):
    host, api, domain = shared_host, shared_api, names.domain()
    site_app = api.create_app(names("site"))
    blog_app = api.create_app(names("blog"))
    start_app("site", site_app.port)
    start_app("blog", blog_app.port)
    ip = api.list_ips()[0]
    api.create_website(
        names("mixed"), ip, False, [domain], [(site_app.name, "/"), (blog_app.name, "/blog")]
    )

    blog = fetch(host, "/blog/2026/post?page=2", domain).json()
    assert (blog["app"], blog["path"], blog["query"]) == ("blog", "/2026/post", "page=2")
    assert fetch(host, "/blog", domain).json()["path"] == "/"
    assert fetch(host, "/blog/", domain).json()["headers"]["x-forwarded-prefix"] == "/blog"
    assert fetch(host, "/blogroll", domain).json()["app"] == "site"
    assert fetch(host, "/", domain).json()["app"] == "site"


def test_delete_app_and_website(shared_host, shared_api, names):
    api, short_lived, brief = shared_api, names("short_lived"), names("brief")
    app = api.create_app(short_lived)
    ip = api.list_ips()[0]
    api.create_website(brief, ip, False, [names.domain()], [(short_lived, "/")])
    assert (shared_host.root / "webapps" / short_lived).is_dir()
    api.delete_website(brief, ip)
    api.delete_app(short_lived)
    assert brief not in [site.name for site in api.list_websites()]
    assert short_lived not in [app.name for app in api.list_apps()]
    assert not (shared_host.root / "webapps" / short_lived).exists()
    assert isinstance(app, App)


def test_login_survives_an_expired_session(shared_host, names):
    api = shared_host.api()
    api.create_app(names("kept"))
    # What an expired session looks like to the client: the panel no longer knows it.
    api.session_id = "0" * 32
    assert names("kept") in [app.name for app in api.list_apps()]
    assert api.session_id != "0" * 32


def test_set_password_then_login_with_new_password(shared_host, own_api):
    username = own_api.account["username"]
    assert set_password(shared_host.root, username, "a new password").returncode == 0
    HostingAPI(shared_host.panel_url).login(username, "a new password")
