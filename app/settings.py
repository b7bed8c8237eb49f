"""Settings: the ini file, then secrets from a private credentials file or the environment.

Secrets never live in the ini files of the repository. The credentials file is a small ini file
with a [credentials] section, kept beside the deployed ini at mode 0400.
"""

import configparser
import os
import re
import secrets
from pathlib import Path

# setting name -> environment variable that overrides it
ENVIRONMENT_OVERRIDES = {
    "sqlalchemy.url": "RANDOPONY_DB_URL",
    "celery.broker_url": "RANDOPONY_BROKER_URL",
    "smtp.host": "RANDOPONY_SMTP_HOST",
    "smtp.port": "RANDOPONY_SMTP_PORT",
    "session_secret": "RANDOPONY_SESSION_SECRET",
    "smtp.username": "RANDOPONY_SMTP_USERNAME",
    "smtp.password": "RANDOPONY_SMTP_PASSWORD",
    "membership.timeout": "RANDOPONY_MEMBERSHIP_TIMEOUT",
    "release": "RANDOPONY_RELEASE",
    "site.url": "RANDOPONY_SITE_URL",
}
SECRET_SETTINGS = ("session_secret", "smtp.username", "smtp.password")
# Where browsers reach the site: the base of every link in its mail.
SITE_URL = re.compile(r"https?://[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?(:[0-9]{1,5})?")


class ConfigurationError(RuntimeError):
    pass


def as_bool(value) -> bool:
    return str(value).strip().lower() in ("1", "true", "yes", "on")


def parse_credentials(text: str | None) -> dict[str, str]:
    """A credentials file's [credentials] values, as written (the release machinery reads and
    writes them on a host as text)."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(text or "")
    return dict(parser.items("credentials")) if parser.has_section("credentials") else {}


def credentials_text(values: dict[str, str]) -> str:
    return "[credentials]\n" + "".join(f"{key} = {value}\n" for key, value in values.items())


def read_credentials(path: Path) -> dict[str, str]:
    return {
        key.replace("_", ".", 1) if key.startswith("smtp_") else key: value
        for key, value in parse_credentials(path.read_text()).items()
    }


def write_credentials(path: Path, values: dict[str, str]) -> None:
    """Create a credentials file readable by its owner only (0400), never overwriting one."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
    with os.fdopen(fd, "w") as f:
        f.write(credentials_text(values))


def new_credentials() -> dict[str, str]:
    return {"session_secret": secrets.token_urlsafe(48), "smtp_username": "", "smtp_password": ""}


def credentials_path(settings) -> Path | None:
    path = settings.get("private_credentials")
    return Path(path) if path else None


def load(settings: dict) -> dict:
    """Complete the ini settings with secrets and environment overrides; refuse to run
    production without a session secret."""
    settings = dict(settings)
    path = credentials_path(settings)
    if path is not None and path.exists():
        for key, value in read_credentials(path).items():
            settings.setdefault(key, value)
    for key, var in ENVIRONMENT_OVERRIDES.items():
        if os.environ.get(var):
            settings[key] = os.environ[var]
    settings["production_deployment"] = as_bool(settings.get("production_deployment", False))
    site_url = settings.get("site.url", "").rstrip("/")
    if site_url and not SITE_URL.fullmatch(site_url):
        raise ConfigurationError(
            f"site.url must be http(s)://domain[:port], lower case, not {site_url!r}"
        )
    settings["site.url"] = site_url
    # A site served over https (its front end says so with X-Forwarded-Proto, which waitress
    # trusts from the router only) sends its session cookie over https only.
    settings.setdefault("session.secure_cookie", str(site_url.startswith("https://")).lower())
    settings.setdefault("timezone", "Canada/Pacific")
    if not settings.get("session_secret"):
        if settings["production_deployment"]:
            raise ConfigurationError(
                f"no session secret: create {path} (initialize_RandoPony_db does) "
                "or set RANDOPONY_SESSION_SECRET"
            )
        # Development only: sessions last as long as the process.
        settings["session_secret"] = secrets.token_urlsafe(48)
    return settings
