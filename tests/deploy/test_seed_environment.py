"""The seed guide's "Webfaction Environment" done through the panel's API as a third-party
client does it (xmlrpc.client: the staging and production sub-domains, a Pyramid app, a website
mounting it at /), then `fab init_staging` on it: the release takes the app the maintainer made
(its port; its template app stopped and replaced) and serves the sub-domain made for it."""

import json
import os
import signal
import subprocess
import xmlrpc.client

import requests

from tests.conftest import wait_until
from tests.deploy.conftest import HOSTING_PASSWORD

STAGING_PARENT, PRODUCTION_PARENT = "bcrandonneur.example", "randonneurs.example"
STAGING, PRODUCTION = f"randopony.{STAGING_PARENT}", f"randopony.{PRODUCTION_PARENT}"
APP = "randopony2026r1"


def page(host, domain: str, path: str = "/") -> requests.Response:
    return requests.get(host.url(path), headers={"Host": domain}, timeout=30)


def test_init_staging_uses_the_environment_set_up_through_the_api(local_host):
    proxy = xmlrpc.client.ServerProxy(f"http://127.0.0.1:{local_host.panel_port}/")
    session, _ = proxy.login("randopony", HOSTING_PASSWORD)
    ip = proxy.list_ips(session)[0]["ip"]
    proxy.create_domain(session, STAGING_PARENT, "randopony")
    proxy.create_domain(session, PRODUCTION_PARENT, "randopony")
    app = proxy.create_app(session, APP, "pyramid", False, "", False)
    proxy.create_website(session, APP, ip, False, [STAGING], [APP, "/"])
    directory = local_host.root / "webapps" / APP
    # The maintainer had a look at the template app before deploying.
    subprocess.run([directory / "bin" / "start"], check=True, timeout=30)
    template = int((directory / "myapp.pid").read_text())
    try:
        wait_until(lambda: page(local_host, STAGING).status_code == 200, "the template app", 60)
        assert "just created" in page(local_host, STAGING).text
        domains = proxy.list_domains(session)

        done = local_host.fab(
            "init_staging",
            RANDOPONY_STAGING_DOMAIN=STAGING,
            RANDOPONY_PRODUCTION_DOMAIN=PRODUCTION,
        )
    finally:
        try:
            os.kill(template, signal.SIGTERM)  # already ended, unless init_staging failed
        except ProcessLookupError:
            pass
    assert f"Staging is up: http://{STAGING}:" in done.stdout
    assert "template app" in done.stdout and "stopped and deleted" in done.stdout

    # The domains, the app and the website the maintainer made, used as they were.
    assert proxy.list_domains(session) == domains
    assert [(a["name"], a["port"]) for a in proxy.list_apps(session)] == [(APP, app["port"])]
    websites = proxy.list_websites(session)
    assert [(w["name"], w["subdomains"], w["website_apps"]) for w in websites] == [
        (APP, [STAGING], [[APP, "/"]])
    ]
    info = json.loads((directory / "release.json").read_text())
    assert (info["domain"], info["port"]) == (STAGING, app["port"])
    # The template is gone: the release serves the staging sub-domain, started by its own bin/.
    assert not (directory / "myapp").exists() and not (directory / "myapp.ini").exists()
    assert "randopony-release" in (directory / "bin" / "start").read_text()
    assert "Welcome to the RandoPony" in page(local_host, STAGING).text
    assert page(local_host, STAGING, "/up").json()["release"] == "2026r1"
