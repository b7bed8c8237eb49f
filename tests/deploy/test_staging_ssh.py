"""The same tasks over SSH: a real sshd on a loopback port, rsync over ssh, and the hosting panel
reached only through an SSH tunnel (it listens on the host's loopback)."""

import pytest
import requests

STAGING = "staging.randopony.localhost"


@pytest.fixture(scope="module")
def ssh_env(local_host, ssh_server):
    return dict(
        RANDOPONY_SSH_HOST=ssh_server.host_spec,
        RANDOPONY_SSH_KEY=ssh_server.key_filename,
        RANDOPONY_SSH_KNOWN_HOSTS=ssh_server.known_hosts,
        # A second release on the same host, so this module does not depend on the local one.
        RANDOPONY_STAGING_RELEASE="2026r2",
        RANDOPONY_STAGING_DOMAIN="ssh-staging.randopony.localhost",
    )


def test_init_and_deploy_staging_over_ssh(local_host, ssh_env):
    done = local_host.fab("init_staging", **ssh_env)
    assert "rsync_code" in done.stdout
    page = requests.get(
        local_host.url("/up"), headers={"Host": "ssh-staging.randopony.localhost"}, timeout=30
    )
    assert page.json()["release"] == "2026r2"

    template = local_host.checkout / "app/templates/about_pony.jinja2"
    template.write_text(template.read_text().replace("About the RandoPony", "About the SSH pony"))
    local_host.fab("deploy_staging", **ssh_env)
    about = requests.get(
        local_host.url("/about-pony/"),
        headers={"Host": "ssh-staging.randopony.localhost"},
        timeout=30,
    )
    assert "About the SSH pony" in about.text

    assert "2026r2" in local_host.fab("releases", **ssh_env).stdout


def test_a_wrong_ssh_port_is_refused_clearly(local_host, ssh_env, ssh_server):
    before = local_host.tree()
    done = local_host.fab(
        "deploy_staging",
        check=False,
        **{**ssh_env, "RANDOPONY_SSH_HOST": f"{ssh_server.user}@127.0.0.1:9"},
    )
    assert done.returncode == 1
    assert "127.0.0.1:9" in done.stderr and "Traceback" not in done.stderr
    assert local_host.tree() == before
