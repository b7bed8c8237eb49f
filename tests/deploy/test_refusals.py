"""Bad input is refused with a clear message before anything on the host changes."""

import json

import pytest

from tests.deploy.conftest import HOSTING_PASSWORD


@pytest.mark.parametrize(
    "variable, value, message",
    [
        ("RANDOPONY_STAGING_RELEASE", "2026r1; rm -rf /", "invalid release name"),
        ("RANDOPONY_STAGING_RELEASE", "../../etc", "invalid release name"),
        ("RANDOPONY_STAGING_RELEASE", "", "invalid release name"),
        ("RANDOPONY_APP_NAME", "Rando Pony", "invalid app name"),
        ("RANDOPONY_STAGING_DOMAIN", "staging_pony..localhost", "invalid domain"),
        ("RANDOPONY_HOST_ROOT", "/nonexistent/host/root", "does not exist"),
        ("RANDOPONY_HOSTING_API", "http://127.0.0.1:9/", "does not answer"),
        ("RANDOPONY_HOSTING_PASSWORD", "wrong-password", "refused the login"),
    ],
)
def test_init_staging_refuses_bad_input_and_changes_nothing(local_host, variable, value, message):
    before = local_host.tree()
    done = local_host.fab("init_staging", check=False, **{variable: value})
    assert done.returncode == 1
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    assert local_host.tree() == before


def test_deploy_staging_refuses_a_release_that_is_production(local_host):
    roles = local_host.root / "deploy" / "roles.json"
    original = roles.read_text() if roles.exists() else None
    roles.write_text(json.dumps({"staging": None, "production": "2026r9", "previous": None}))
    try:
        before = local_host.tree()
        done = local_host.fab("deploy_staging", check=False, RANDOPONY_STAGING_RELEASE="2026r9")
        assert done.returncode == 1
        assert "is production" in done.stderr
        assert local_host.tree() == before
    finally:
        if original is None:
            roles.unlink()
        else:
            roles.write_text(original)


def test_deploy_before_init_says_to_run_init_staging(local_host):
    done = local_host.fab("deploy_staging", check=False, RANDOPONY_STAGING_RELEASE="2026r7")
    assert done.returncode == 1
    assert "run init_staging" in done.stderr


def test_start_app_for_a_missing_production_release(local_host):
    done = local_host.fab("start_app", "--release=production", check=False)
    assert done.returncode == 1 and "no production release" in done.stderr
    done = local_host.fab("start_app", "--release=qa", check=False)
    assert done.returncode == 1 and "staging or production" in done.stderr


def test_hosting_password_is_never_printed(local_host):
    # A login the panel refuses: the password reaches the panel, and must reach no output.
    wrong = "not-the-password-9f3c"
    done = local_host.fab("init_staging", check=False, RANDOPONY_HOSTING_PASSWORD=wrong)
    assert done.returncode == 1 and "refused the login" in done.stderr
    assert wrong not in done.stdout + done.stderr
    assert HOSTING_PASSWORD not in done.stdout + done.stderr
    host_log = (local_host.root / "logs/host/host.log").read_text()
    assert wrong not in host_log and HOSTING_PASSWORD not in host_log
