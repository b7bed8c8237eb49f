"""The hosting panel's state: accounts, domains, apps with their ports, and websites, kept in
SQLite.

Every change is validated in full before anything is written, and written in one transaction,
so bad input raises a `PanelError` and leaves the state as it was.

Domains, apps and websites belong to the account that created them (their `owner`). As on
Webfaction, a website serves only names its account has created with `create_domain` (a domain,
or a sub-domain of one), and a name stays its account's while it is detached from every website
(between the two calls that move it from one website to another, say), until `delete_domain`.
Names at or under another account's domain are that account's. The one exception is a name under
`.localhost` (RFC 6761: it only ever reaches this machine): a website may use one it has not
created, and it is created for the account on the way, so a local host needs no domain set-up.
Names are one namespace for the whole host (an app's name is its directory), but an account sees
and touches only its own: another account's domain, app or website is answered exactly like one
that does not exist.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import re
import reprlib
import shutil
import socket
import sqlite3
import sys
from dataclasses import dataclass
from pathlib import Path

from argon2 import PasswordHasher

from deploy.host import app_template
from deploy.panel_wire import FaultCode

PYRAMID = "pyramid"


def _pyramid_label() -> str:
    try:
        version = importlib.metadata.version("pyramid")
    except importlib.metadata.PackageNotFoundError:  # the template app would not start either
        version = "(not installed)"
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    return f"Pyramid {version} (Python {python}), with a template app"


APP_TYPES = {
    "custom_app_with_port": "Custom app (listening on port)",
    # Laid out with the template app the seed guide's maintainer got from Webfaction's panel.
    PYRAMID: _pyramid_label(),
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
"""
# Made by the migration, which adopts the names the websites already serve (see _migrate).
DOMAIN_SCHEMA = (
    """CREATE TABLE account_domains (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL UNIQUE,
        owner TEXT
    )""",
    # A sub-domain's name is the part before its domain: "staging" of "randopony.example.org".
    """CREATE TABLE account_subdomains (
        domain_id INTEGER NOT NULL REFERENCES account_domains (id),
        name TEXT NOT NULL,
        PRIMARY KEY (domain_id, name)
    )""",
)
LOCAL_SUFFIX = ".localhost"
# SQL conditions on an account_domains row `d` and a full name :name.
_AT_OR_ABOVE = "(name = :name OR substr(:name, -length(name) - 1) = '.' || name)"
_CREATED = (
    "(d.name = :name OR EXISTS (SELECT 1 FROM account_subdomains s"
    " WHERE s.domain_id = d.id AND s.name || '.' || d.name = :name))"
)


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
        """Adopt a store from before accounts owned anything (add the owner columns, give what
        nobody owns to the first account) and from before domains were created (adopt every
        name its websites serve, or an account held, as created by its account)."""
        # IMMEDIATE: set-password may open the store while the host is opening it.
        with self._transaction():
            for table in ("apps", "websites"):
                columns = {row["name"] for row in self.db.execute(f"PRAGMA table_info({table})")}
                if "owner" not in columns:
                    self.db.execute(f"ALTER TABLE {table} ADD COLUMN owner TEXT")
            if not self._has_table("account_domains"):
                for statement in DOMAIN_SCHEMA:
                    self.db.execute(statement)
                self._adopt_domains()
            self._adopt_unowned()

    def _has_table(self, name: str) -> bool:
        row = self.db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
        ).fetchone()
        return row is not None

    def _adopt_domains(self) -> None:
        held: dict[str | None, set[str]] = {}
        for site in self.db.execute("SELECT subdomains, owner FROM websites").fetchall():
            held.setdefault(site["owner"], set()).update(json.loads(site["subdomains"]))
        # The names an account held before domains were created, detached ones included.
        if self._has_table("domains"):
            for row in self.db.execute("SELECT name, owner FROM domains").fetchall():
                held.setdefault(row["owner"], set()).add(row["name"])
            self.db.execute("DROP TABLE domains")
        for owner, names in held.items():
            for name in sorted(names, key=lambda name: name.count(".")):
                self._add_name(owner, name)

    def _add_name(self, owner: str | None, name: str) -> None:
        """Create one full name for the owner: a sub-domain of the owner's closest domain above
        it, or else a domain of its own."""
        if self._covers(owner, name):
            return
        parent = self._closest_domain(owner, name)
        # OR IGNORE: a store opened at boot must not fail on a name two owners held by mistake.
        if parent is None:
            self.db.execute(
                "INSERT OR IGNORE INTO account_domains (name, owner) VALUES (?, ?)", (name, owner)
            )
        else:
            self.db.execute(
                "INSERT OR IGNORE INTO account_subdomains (domain_id, name) VALUES (?, ?)",
                (parent["id"], name.removesuffix("." + parent["name"])),
            )

    def _adopt_unowned(self) -> None:
        # The oldest account (rowid order) is the one that ran the host before accounts owned.
        first = "(SELECT username FROM accounts ORDER BY rowid LIMIT 1)"
        for table in ("apps", "websites", "account_domains"):
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

    def account_id(self, username: str) -> int | None:
        row = self.db.execute(
            "SELECT rowid FROM accounts WHERE username = ?", (username,)
        ).fetchone()
        return row[0] if row else None

    def has_accounts(self) -> bool:
        return self.db.execute("SELECT 1 FROM accounts LIMIT 1").fetchone() is not None

    # domains

    def list_domains(self, owner: str) -> list[dict]:
        rows = self.db.execute(
            "SELECT id, name FROM account_domains WHERE owner = ? ORDER BY name", (owner,)
        ).fetchall()
        return [self._domain_dict(row) for row in rows]

    def create_domain(self, owner: str, domain, subdomains: tuple) -> dict:
        """The domain with these sub-domains added (creating it when it is new); sub-domains it
        has already are no error, as on Webfaction, where clients add sub-domains this way."""
        name = _check_domain(domain)
        if "." not in name:
            raise PanelError(
                FaultCode.INVALID,
                f"invalid domain name {short(domain)}: a domain has a name and a top-level "
                "domain at least, like example.org",
            )
        labels = list(dict.fromkeys(_check_subdomain(name, sub) for sub in subdomains))
        for full in [name, *(f"{label}.{name}" for label in labels)]:
            self._refuse_foreign(owner, full)
        with self._transaction():
            row = self._domain_row(owner, name)
            if row is None:
                self.db.execute(
                    "INSERT INTO account_domains (name, owner) VALUES (?, ?)", (name, owner)
                )
                row = self._domain_row(owner, name)
            self.db.executemany(
                "INSERT OR IGNORE INTO account_subdomains (domain_id, name) VALUES (?, ?)",
                [(row["id"], label) for label in labels],
            )
        return self._domain_dict(row)

    def delete_domain(self, owner: str, domain, subdomains: tuple) -> dict:
        """Delete the sub-domains named, or with none named the domain and all its sub-domains;
        refused while a website of the account serves a name that would go."""
        name = _check_domain(domain)
        row = self._domain_row(owner, name)
        if row is None:
            raise PanelError(FaultCode.NOT_FOUND, f"no domain named {short(domain)}")
        existing = self._domain_dict(row)["subdomains"]
        labels = []
        for sub in subdomains:
            label = _check_subdomain(name, sub)
            if label not in existing:
                raise PanelError(
                    FaultCode.NOT_FOUND, f"domain {name!r} has no sub-domain {short(sub)}"
                )
            labels.append(label)
        with self._transaction():
            if labels:
                self.db.executemany(
                    "DELETE FROM account_subdomains WHERE domain_id = ? AND name = ?",
                    [(row["id"], label) for label in labels],
                )
            else:
                self.db.execute("DELETE FROM account_subdomains WHERE domain_id = ?", (row["id"],))
                self.db.execute("DELETE FROM account_domains WHERE id = ?", (row["id"],))
            # Deleted, then checked: a name may still be served through another of the
            # account's domains. The refusal rolls the deletion back.
            for site in self.list_websites(owner):
                for served in site["subdomains"]:
                    if not self._covers(owner, served):
                        raise PanelError(
                            FaultCode.IN_USE,
                            f"domain {served!r} is used by website {site['name']!r}: "
                            "detach it from the website first (update_website)",
                        )
        return {"id": row["id"], "domain": name, "subdomains": labels or existing}

    def domain_owner(self, domain) -> str | None:
        """The account that has created this full name (a domain or a sub-domain of one)."""
        row = self.db.execute(
            f"SELECT owner FROM account_domains d WHERE {_CREATED}", {"name": _text(domain)}
        ).fetchone()
        return row["owner"] if row else None

    def _domain_row(self, owner: str | None, name: str) -> sqlite3.Row | None:
        return self.db.execute(
            "SELECT id, name FROM account_domains WHERE name = ? AND owner IS ?", (name, owner)
        ).fetchone()

    def _domain_dict(self, row: sqlite3.Row) -> dict:
        labels = self.db.execute(
            "SELECT name FROM account_subdomains WHERE domain_id = ? ORDER BY name", (row["id"],)
        )
        return {"id": row["id"], "domain": row["name"], "subdomains": [r[0] for r in labels]}

    def _covers(self, owner: str | None, name: str) -> bool:
        """Whether the owner has created this full name."""
        row = self.db.execute(
            f"SELECT 1 FROM account_domains d WHERE owner IS :owner AND {_CREATED}",
            {"owner": owner, "name": name},
        ).fetchone()
        return row is not None

    def _closest_domain(self, owner: str | None, name: str) -> sqlite3.Row | None:
        """The owner's domain nearest above the full name (or the name itself)."""
        return self.db.execute(
            f"SELECT id, name FROM account_domains WHERE owner IS :owner AND {_AT_OR_ABOVE} "
            "ORDER BY length(name) DESC LIMIT 1",
            {"owner": owner, "name": name},
        ).fetchone()

    def _refuse_foreign(self, owner: str, name: str) -> None:
        # A name belongs to whoever has the domain nearest above it, so an account can neither
        # take another's sub-domains nor be shut out of its own by a domain created above them.
        nearest = self.db.execute(
            f"SELECT owner FROM account_domains WHERE {_AT_OR_ABOVE} "
            "ORDER BY length(name) DESC LIMIT 1",
            {"name": name},
        ).fetchone()
        if nearest is not None and nearest["owner"] != owner:
            raise PanelError(FaultCode.CONFLICT, f"domain {name!r} belongs to another account")

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
        directory = self.webapps_dir / name
        if type_ == PYRAMID and directory.exists() and any(directory.iterdir()):
            # Files left by a deleted app (a release's, say) are never written over.
            raise PanelError(
                FaultCode.CONFLICT,
                f"webapps/{name} already holds files: a Pyramid app's template is laid out only "
                "in an empty directory (delete them, or create a custom_app_with_port)",
            )
        port = self._free_port()
        directory.mkdir(parents=True, exist_ok=True)
        if type_ == PYRAMID:
            app_template.lay_out(directory, name, port)
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
        directory = self.webapps_dir / name
        # A template app nobody deployed to goes with its app, unless bin/start left it running.
        if app_template.is_template(directory) and not (directory / app_template.PID).exists():
            shutil.rmtree(directory, ignore_errors=True)
        # Otherwise the directory is a release's files and the rollback point: only an empty
        # one goes.
        try:
            directory.rmdir()
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
            self._add_local_names(owner, json.loads(values[2]))
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
            self._add_local_names(owner, json.loads(values[2]))
        return self.get_website(owner, name)

    def delete_website(self, owner: str, name, ip) -> dict:
        site = self.get_website(owner, name)
        if site["ip"] != ip:
            raise PanelError(
                FaultCode.NOT_FOUND, f"website {name!r} is on {site['ip']}, not on {short(ip)}"
            )
        self.db.execute("DELETE FROM websites WHERE name = ?", (name,))
        return site

    def _check_created(self, owner: str, domain: str) -> None:
        if self._covers(owner, domain):
            return
        self._refuse_foreign(owner, domain)
        if domain.endswith(LOCAL_SUFFIX):
            return  # created on the way (_add_local_names)
        parent = self._closest_domain(owner, domain)
        how = (
            f"create_domain(session, {parent['name']!r}, "
            f"{domain.removesuffix('.' + parent['name'])!r})"
            if parent is not None
            else f"create_domain(session, {domain!r})"
        )
        raise PanelError(
            FaultCode.NOT_FOUND,
            f"domain {domain!r} has not been created on this account: create it first with {how}",
        )

    def _add_local_names(self, owner: str, domains: list[str]) -> None:
        # Shortest first, so "staging.pony.localhost" becomes a sub-domain of "pony.localhost".
        for domain in sorted(domains, key=lambda domain: domain.count(".")):
            self._add_name(owner, domain)

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
            self._check_created(owner, domain)
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


def _check_subdomain(domain: str, sub) -> str:
    """A sub-domain's name (the part before its domain), checked as part of the full name."""
    if not isinstance(sub, str):
        raise PanelError(FaultCode.INVALID, f"sub-domain {short(sub)} must be a string")
    label = sub.lower()
    if not label or label.endswith("."):
        raise PanelError(FaultCode.INVALID, f"invalid sub-domain {short(sub)}")
    try:
        _check_domain(f"{label}.{domain}")
    except PanelError:
        raise PanelError(
            FaultCode.INVALID,
            f"invalid sub-domain {short(sub)} of {domain!r}: use letters, digits and - "
            "between dots (a full name has at most 253 characters)",
        ) from None
    return label


def _port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
