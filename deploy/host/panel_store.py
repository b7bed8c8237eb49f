"""The hosting panel's state: accounts, apps with their ports, and websites, kept in SQLite.

Every change is validated in full before anything is written, and written in one transaction,
so bad input raises a `PanelError` and leaves the state as it was.

Apps and websites belong to the account that created them (their `owner`). A domain belongs to
the account whose website first served it, and stays that account's when it is detached (between
the two calls that move it from one website to another, say), so no other account can take it.
Names are one namespace for the whole host (an app's name is its directory), but an account sees
and touches only its own: another account's app or website is answered exactly like one that
does not exist.
"""

from __future__ import annotations

import contextlib
import json
import re
import reprlib
import socket
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from argon2 import PasswordHasher

from deploy.panel_wire import FaultCode

APP_TYPES = {
    "custom_app_with_port": "Custom app (listening on port)",
}
NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
USERNAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
LABEL_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
# Mount paths end up in URLs the router matches byte for byte, so only plain URL characters.
PATH_RE = re.compile(r"^/[A-Za-z0-9._~@:+,;=!$'()*-]*(?:/[A-Za-z0-9._~@:+,;=!$'()*-]+)*/?$")

SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (
    username TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS apps (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL,
    autostart INTEGER NOT NULL,
    extra_info TEXT NOT NULL,
    open_port INTEGER NOT NULL,
    port INTEGER NOT NULL UNIQUE,
    owner TEXT
);
CREATE TABLE IF NOT EXISTS websites (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    ip TEXT NOT NULL,
    https INTEGER NOT NULL,
    subdomains TEXT NOT NULL,
    website_apps TEXT NOT NULL,
    owner TEXT
);
CREATE TABLE IF NOT EXISTS domains (
    name TEXT PRIMARY KEY,
    owner TEXT
);
"""


class PanelError(Exception):
    """Bad input or a refused change; becomes an XML-RPC Fault with this code and message."""

    def __init__(self, code: FaultCode, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Mount:
    path: str
    app: str
    port: int


@dataclass(frozen=True)
class SiteRoute:
    """What the router needs to know about one website."""

    website: str
    mounts: tuple[Mount, ...]


class PanelStore:
    def __init__(self, db_path: Path, webapps_dir: Path, ips: list[str], ports: range):
        self.webapps_dir = webapps_dir
        self.ips = ips
        self.ports = ports
        db_path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(db_path, isolation_level=None, timeout=10)
        self.db.row_factory = sqlite3.Row
        self.db.executescript(SCHEMA)
        self._migrate()
        self.hasher = PasswordHasher()

    def close(self) -> None:
        self.db.close()

    def _migrate(self) -> None:
        """Adopt a store from before accounts owned anything: add the owner columns, and give
        what nobody owns to the first account."""
        # IMMEDIATE: set-password may open the store while the host is opening it.
        with self._transaction():
            for table in ("apps", "websites"):
                columns = {row["name"] for row in self.db.execute(f"PRAGMA table_info({table})")}
                if "owner" not in columns:
                    self.db.execute(f"ALTER TABLE {table} ADD COLUMN owner TEXT")
            for site in self.db.execute("SELECT subdomains, owner FROM websites").fetchall():
                self._claim(site["owner"], json.loads(site["subdomains"]))
            self._adopt_unowned()

    def _adopt_unowned(self) -> None:
        # The oldest account (rowid order) is the one that ran the host before accounts owned.
        first = "(SELECT username FROM accounts ORDER BY rowid LIMIT 1)"
        for table in ("apps", "websites", "domains"):
            self.db.execute(f"UPDATE {table} SET owner = {first} WHERE owner IS NULL")

    @contextlib.contextmanager
    def _transaction(self):
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def _claim(self, owner: str | None, domains: list[str]) -> None:
        self.db.executemany(
            "INSERT OR IGNORE INTO domains (name, owner) VALUES (?, ?)",
            [(domain, owner) for domain in domains],
        )

    # accounts

    def set_password(self, username: str, password: str) -> None:
        if not USERNAME_RE.fullmatch(username):
            raise PanelError(
                FaultCode.INVALID,
                f"invalid username {username!r}: use lowercase letters, digits and _",
            )
        if len(password) < 8:
            raise PanelError(FaultCode.INVALID, "the password must have at least 8 characters")
        self.db.execute(
            "INSERT INTO accounts (username, password_hash) VALUES (?, ?) "
            "ON CONFLICT (username) DO UPDATE SET password_hash = excluded.password_hash",
            (username, self.hasher.hash(password)),
        )
        # Rows adopted from an old store while it had no account yet.
        self._adopt_unowned()

    def password_hash(self, username: str) -> str | None:
        row = self.db.execute(
            "SELECT password_hash FROM accounts WHERE username = ?", (username,)
        ).fetchone()
        return row["password_hash"] if row else None

    def has_accounts(self) -> bool:
        return self.db.execute("SELECT 1 FROM accounts LIMIT 1").fetchone() is not None

    # apps

    def list_apps(self, owner: str | None = None) -> list[dict]:
        """The owner's apps, or every account's (None, for the router)."""
        rows = self.db.execute(
            "SELECT * FROM apps WHERE ? IS NULL OR owner = ? ORDER BY name", (owner, owner)
        ).fetchall()
        return [_app_dict(row) for row in rows]

    def get_app(self, owner: str, name) -> dict:
        row = self.db.execute(
            "SELECT * FROM apps WHERE name = ? AND owner = ?", (_text(name), owner)
        ).fetchone()
        if row is None:
            raise PanelError(FaultCode.NOT_FOUND, f"no app named {short(name)}")
        return _app_dict(row)

    def create_app(
        self, owner: str, name: str, type_: str, autostart: bool, extra_info: str, open_port: bool
    ) -> dict:
        _check_name("app", name)
        if type_ not in APP_TYPES:
            raise PanelError(
                FaultCode.INVALID,
                f"unknown app type {short(type_)}; "
                f"this host offers: {', '.join(sorted(APP_TYPES))}",
            )
        autostart = _check_bool("autostart", autostart)
        open_port = _check_bool("open_port", open_port)
        if not isinstance(extra_info, str):
            raise PanelError(FaultCode.INVALID, "extra_info must be a string")
        if self.db.execute("SELECT 1 FROM apps WHERE name = ?", (name,)).fetchone():
            raise PanelError(FaultCode.CONFLICT, f"an app named {name!r} already exists")
        port = self._free_port()
        (self.webapps_dir / name).mkdir(parents=True, exist_ok=True)
        self.db.execute(
            "INSERT INTO apps (name, type, autostart, extra_info, open_port, port, owner) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (name, type_, autostart, extra_info, open_port, port, owner),
        )
        return self.get_app(owner, name)

    def delete_app(self, owner: str, name) -> dict:
        app = self.get_app(owner, name)
        users = [site["name"] for site in self.list_websites(owner) if _uses_app(site, name)]
        if users:
            raise PanelError(
                FaultCode.IN_USE,
                f"app {name!r} is used by website(s) {', '.join(users)}; detach it from them first",
            )
        self.db.execute("DELETE FROM apps WHERE name = ?", (name,))
        # The directory is a release's files and the rollback point: only an empty one goes.
        try:
            (self.webapps_dir / name).rmdir()
        except OSError:
            pass
        return app

    def _free_port(self) -> int:
        taken = {row[0] for row in self.db.execute("SELECT port FROM apps")}
        for port in self.ports:
            if port not in taken and _port_is_free(port):
                return port
        raise PanelError(
            FaultCode.CONFLICT,
            f"no free port left in {self.ports.start}-{self.ports.stop - 1}",
        )

    # websites

    def list_websites(self, owner: str | None = None) -> list[dict]:
        """The owner's websites, or every account's (None, for the router)."""
        rows = self.db.execute(
            "SELECT * FROM websites WHERE ? IS NULL OR owner = ? ORDER BY name", (owner, owner)
        ).fetchall()
        return [_website_dict(row) for row in rows]

    def get_website(self, owner: str, name) -> dict:
        row = self.db.execute(
            "SELECT * FROM websites WHERE name = ? AND owner = ?", (_text(name), owner)
        ).fetchone()
        if row is None:
            raise PanelError(FaultCode.NOT_FOUND, f"no website named {short(name)}")
        return _website_dict(row)

    def create_website(
        self, owner: str, name: str, ip: str, https: bool, subdomains: list, site_apps: tuple
    ) -> dict:
        _check_name("website", name)
        if self.db.execute("SELECT 1 FROM websites WHERE name = ?", (name,)).fetchone():
            raise PanelError(FaultCode.CONFLICT, f"a website named {name!r} already exists")
        values = self._check_website(owner, name, ip, https, subdomains, site_apps)
        with self._transaction():
            self.db.execute(
                "INSERT INTO websites (name, ip, https, subdomains, website_apps, owner) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (name, *values, owner),
            )
            self._claim(owner, json.loads(values[2]))
        return self.get_website(owner, name)

    def update_website(
        self, owner: str, name: str, ip: str, https: bool, subdomains: list, site_apps: tuple
    ) -> dict:
        self.get_website(owner, name)
        values = self._check_website(owner, name, ip, https, subdomains, site_apps)
        with self._transaction():
            self.db.execute(
                "UPDATE websites SET ip = ?, https = ?, subdomains = ?, website_apps = ? "
                "WHERE name = ?",
                (*values, name),
            )
            self._claim(owner, json.loads(values[2]))
        return self.get_website(owner, name)

    def delete_website(self, owner: str, name, ip) -> dict:
        site = self.get_website(owner, name)
        if site["ip"] != ip:
            raise PanelError(
                FaultCode.NOT_FOUND, f"website {name!r} is on {site['ip']}, not on {short(ip)}"
            )
        self.db.execute("DELETE FROM websites WHERE name = ?", (name,))
        return site

    def domain_owner(self, domain) -> str | None:
        row = self.db.execute(
            "SELECT owner FROM domains WHERE name = ?", (_text(domain),)
        ).fetchone()
        return row["owner"] if row else None

    def _check_website(self, owner, name, ip, https, subdomains, site_apps) -> tuple:
        if not isinstance(ip, str) or ip not in self.ips:
            raise PanelError(
                FaultCode.INVALID,
                f"unknown ip {short(ip)}; this host serves websites on: {', '.join(self.ips)}",
            )
        if _check_bool("https", https):
            raise PanelError(
                FaultCode.INVALID,
                "https websites are not offered: this host's router serves plain HTTP "
                "(terminate TLS in front of it)",
            )
        if not isinstance(subdomains, list | tuple):
            raise PanelError(FaultCode.INVALID, "subdomains must be a list of domain names")
        domains = [_check_domain(domain) for domain in subdomains]
        if len(set(domains)) != len(domains):
            raise PanelError(FaultCode.INVALID, "a domain is listed twice in subdomains")
        for domain in domains:
            if self.domain_owner(domain) not in (None, owner):
                raise PanelError(
                    FaultCode.CONFLICT, f"domain {domain!r} belongs to another account"
                )
        for other in self.list_websites(owner):
            if other["name"] == name:
                continue
            for domain in domains:
                if domain in other["subdomains"]:
                    raise PanelError(
                        FaultCode.CONFLICT,
                        f"domain {domain!r} is already attached to website {other['name']!r}",
                    )
        mounts = []
        for site_app in site_apps:
            if not isinstance(site_app, list | tuple) or len(site_app) != 2:
                raise PanelError(
                    FaultCode.INVALID,
                    f"each site app must be [app_name, path], not {short(site_app)}",
                )
            app, path = site_app
            if not isinstance(app, str) or not isinstance(path, str):
                raise PanelError(
                    FaultCode.INVALID, f"site app {short(site_app)} must be two strings"
                )
            self.get_app(owner, app)
            if not path.startswith("/"):
                raise PanelError(
                    FaultCode.INVALID,
                    f"path {short(path)} for app {app!r} must be absolute (start /)",
                )
            if not PATH_RE.fullmatch(path) or "/./" in path + "/" or "/../" in path + "/":
                raise PanelError(FaultCode.INVALID, f"path {short(path)} is not a plain URL path")
            path = path.rstrip("/") or "/"
            if path in [mounted for _, mounted in mounts]:
                raise PanelError(FaultCode.INVALID, f"path {path!r} is used twice in {name!r}")
            mounts.append([app, path])
        return ip, False, json.dumps(domains), json.dumps(mounts)

    def routes(self) -> dict[str, SiteRoute]:
        """Domain -> route, for the router."""
        ports = {app["name"]: app["port"] for app in self.list_apps()}
        table = {}
        for site in self.list_websites():
            mounts = tuple(
                sorted(
                    (Mount(path, app, ports[app]) for app, path in site["website_apps"]),
                    key=lambda mount: len(mount.path),
                    reverse=True,
                )
            )
            for domain in site["subdomains"]:
                table[domain] = SiteRoute(site["name"], mounts)
        return table


_SHORT = reprlib.Repr()
_SHORT.maxlevel, _SHORT.maxstring, _SHORT.maxother = 3, 80, 80


def short(value) -> str:
    """A value for a fault message: a caller's argument may be megabytes, or nested too deep
    for repr()."""
    return _SHORT.repr(value)


def _text(value) -> str | None:
    # Only a string can name anything; anything else is looked up as a name nothing has.
    return value if isinstance(value, str) else None


def _app_dict(row: sqlite3.Row) -> dict:
    return {
        "id": row["id"],
        "name": row["name"],
        "type": row["type"],
        "autostart": bool(row["autostart"]),
        "extra_info": row["extra_info"],
        "open_port": bool(row["open_port"]),
        "port": row["port"],
    }


def _website_dict(row: sqlite3.Row) -> dict:
    return {
        "id": row["id"],
        "name": row["name"],
        "ip": row["ip"],
        "https": bool(row["https"]),
        "subdomains": json.loads(row["subdomains"]),
        "website_apps": json.loads(row["website_apps"]),
    }


def _uses_app(site: dict, app: str) -> bool:
    return any(mounted == app for mounted, _ in site["website_apps"])


def _check_name(kind: str, name) -> None:
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise PanelError(
            FaultCode.INVALID,
            f"invalid {kind} name {short(name)}: use a lowercase letter, then lowercase letters, "
            "digits or _ (at most 64)",
        )


def _check_bool(field: str, value) -> bool:
    # XML-RPC clients send booleans, but some send 0/1 integers.
    if isinstance(value, bool) or value in (0, 1):
        return bool(value)
    raise PanelError(FaultCode.INVALID, f"{field} must be a boolean, not {short(value)}")


def _check_domain(domain) -> str:
    if not isinstance(domain, str):
        raise PanelError(FaultCode.INVALID, f"domain {short(domain)} must be a string")
    name = domain.lower().removesuffix(".")
    labels = name.split(".")
    if len(name) > 253 or not all(LABEL_RE.fullmatch(label) for label in labels):
        raise PanelError(FaultCode.INVALID, f"invalid domain name {short(domain)}")
    return name


def _port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
