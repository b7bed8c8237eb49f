"""Sanitising a copy of production's database so that staging can never reach a real rider.

`fab sync_staging` copies production's database into the staging release, migrates it to the
release's head and then runs `sanitize` on it (or `python -m app.sanitize staging.ini ...`, below):

- every address (riders, organizers, wranglers, the site's configured addresses) goes to a sink
  domain that cannot deliver (see `sink_address`), one sink address per original address, so
  duplicate sign-ups are still found; the sink address is a keyed hash (the host's sink key,
  which staging cannot read), so it gives nothing of the address away, and the sync prints the
  wranglers' staging logins;
- links to the production domain point at the staging domain;
- every wrangler's password becomes the staging password, and the events' secret uuids (the
  organizers' links) are replaced, so production's secret links do not work on staging;
- the outbox is emptied: nothing copied from production is ever sent.

What happens to each column is declared once, in RULES. A column with no rule whose name or type
says it may hold personal data is reported by `uncovered_columns` (a test fails on any), so a new
model column cannot slip through unnoticed. As a safety net every text column, ruled or not, is
scrubbed (addresses to the sink, production links to staging), and `sanitize` ends by scanning
every text column of every table in the database and refuses (SanitizeError) if anything is left.

On SQLite (the site's database) each table is rewritten by one UPDATE in which SQLite calls the
rules' own functions, and the scan judges the values inside SQLite, so only what leaks reaches
Python; with another database the rows go through Python in batches. Either way it all happens in
the caller's transaction, and a refusal leaves the database as it was.

Sessions are signed cookies checked with each release's own session secret, and the page cache's
token is replaced below, so nothing else of production's carries over.

The rider list files, named by the events' secret uuids, are rewritten for staging from a mirror
of production's by app/sanitize_files.py, with the same functions and options, under the new
uuids (`main`, `--rider-lists-from` / `--rider-lists-to`).
"""

import argparse
import hashlib
import hmac
import json
import os
import re
import sys
import uuid
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache

from sqlalchemy import (
    Column,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    and_,
    bindparam,
    case,
    cast,
    func,
    inspect,
    or_,
    select,
    text,
)
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import column as sql_column
from sqlalchemy.sql import table as sql_table

# RFC 2606: .invalid can never resolve, so mail to it cannot reach anyone.
DEFAULT_SINK_DOMAIN = "sink.invalid"
RESERVED_TOP_LEVEL = ("invalid", "localhost", "test", "example")
RESERVED_DOMAINS = ("example.com", "example.net", "example.org")
# 80 bits: distinct for any number of addresses a club will ever have (birthday bound 2**40).
DIGEST_LENGTH = 20
# The sink key is at least this long (bytes), so the hashes cannot be tried address by address.
MIN_SINK_KEY = 16
BATCH = 2000


class SanitizeError(RuntimeError):
    """The database cannot be sanitised, or something personal was left after sanitising."""


@dataclass(frozen=True)
class Options:
    sink_domain: str
    production_domain: str
    staging_domain: str
    password_hash: str
    sink_key: bytes


@dataclass(frozen=True)
class Rule:
    """What sanitising does to one column, and why. `rewrite` maps a non-null value to its
    sanitised value; the value is left as it is (apart from the scrub) when it is None."""

    action: str
    reason: str
    rewrite: Callable[[str, Options], str] | None = None
    # The same value always gives the same result: SQLite is told, and a result may be reused
    # for the same value (`_sql_rewrite`). A rewrite that draws something random must say False.
    deterministic: bool = True


# --- Addresses and links --------------------------------------------------------------------

# An address inside free text or a link. Deliberately loose on the local part's start (it may
# catch only the tail of an odd one): what matters is that the domain after "@" is caught.
ADDRESS = r"[\w.%+'-]+@[\w-]+(?:\.[\w-]+)*"
ADDRESS_RE = re.compile(ADDRESS)
# A hostname in lower-case ASCII letters, digits and hyphens.
PLAIN_HOSTNAME = re.compile(r"[a-z0-9-]+(?:\.[a-z0-9-]+)*")
# Characters outside ASCII that Python takes for ASCII letters: str.lower() makes the dotted
# capital I an i (and a dot) and the Kelvin sign a k, and IGNORECASE also matches the dotless i
# and the long s with i and s (tests/test_sanitize.py checks this Python's Unicode tables).
CASE_LIKE_ASCII = "\u0130\u0131\u017f\u212a"
LIST_SEPARATOR = re.compile(r"[,;]")


def host_pattern(domain: str) -> str:
    """`domain` as a whole hostname: not a part of a longer one, so staging.example.org is not
    example.org, and example.org.evil.com is not either."""
    return rf"(?<![\w.-]){re.escape(domain)}(?![\w-]|\.[\w-])"


def in_domain(address_domain: str, domain: str) -> bool:
    address_domain, domain = address_domain.lower(), domain.lower()
    return address_domain == domain or address_domain.endswith("." + domain)


def is_sink_address(address: str, sink_domain: str) -> bool:
    local, at, domain = address.strip().rpartition("@")
    return bool(at and local) and in_domain(domain, sink_domain)


def sink_address(address: str, sink_domain: str, key: bytes) -> str:
    """ada@example.org -> <20 hex digits>@sink.invalid: an HMAC of the lower-cased address under
    the host's sink key. The same address always gives the same sink address (duplicate sign-ups
    are still found, a wrangler's staging login stays the same from one refresh to the next),
    different addresses give different ones, and without the key nothing of the address can be
    read back or guessed from it. Addresses already at the sink stay as they are, so sanitising
    twice changes nothing."""
    address = address.strip()
    if is_sink_address(address, sink_domain):
        return address
    digest = hmac.new(key, address.lower().encode(), hashlib.sha256).hexdigest()
    return f"{digest[:DIGEST_LENGTH]}@{sink_domain}"


def sink_address_list(value: str, options: Options) -> str:
    """'a@x, b@y' -> 'a.x.<hash>@sink, b.y.<hash>@sink' (organizer_email holds lists)."""
    if "," not in value and ";" not in value:  # one address (or none): the same, sooner
        address = value.strip()
        return sink_address(address, options.sink_domain, options.sink_key) if address else ""
    addresses = [a.strip() for a in LIST_SEPARATOR.split(value) if a.strip()]
    return ", ".join(sink_address(a, options.sink_domain, options.sink_key) for a in addresses)


def scrub(value: str, options: Options) -> str:
    """Free text or a link: addresses in it go to the sink, the production hostname becomes the
    staging one. A value with neither comes back unchanged."""
    if "@" not in value and options.production_domain not in value.lower():
        return value

    def replace(match: re.Match) -> str:
        if match.group("address"):
            return sink_address(match.group("address"), options.sink_domain, options.sink_key)
        return options.staging_domain

    return _scrub_re(options.production_domain).sub(replace, value)


@lru_cache(maxsize=8)
def _scrub_re(production_domain: str) -> re.Pattern:
    return re.compile(
        rf"(?P<address>{ADDRESS})|(?P<host>{host_pattern(production_domain)})", re.IGNORECASE
    )


def _staging_password(_value: str, options: Options) -> str:
    return options.password_hash


def _new_secret(_value: str, _options: Options) -> str:
    return str(uuid.uuid4())


# --- The rules --------------------------------------------------------------------------------


def to_sink(reason: str) -> Rule:
    """The column holds an address or a comma separated list of them."""
    return Rule("sink addresses", reason, sink_address_list)


def staging_links(reason: str) -> Rule:
    """The column holds a link: production's hostname becomes staging's."""
    return Rule("staging links", reason, scrub)


def scrubbed(reason: str) -> Rule:
    """Free text: addresses in it go to the sink, links to production go to staging."""
    return Rule("scrub", reason, scrub)


def staging_password(reason: str) -> Rule:
    return Rule("staging password", reason, _staging_password)


def regenerated(reason: str) -> Rule:
    """A secret or token: replaced by a new random uuid."""
    return Rule("regenerate", reason, _new_secret, deterministic=False)


def kept(reason: str) -> Rule:
    """Personal data left as it is, on purpose (the safety scrub still applies)."""
    return Rule("keep", reason)


def not_personal(reason: str) -> Rule:
    """A column whose name looks personal but whose content is not (the scrub still applies)."""
    return Rule("not personal", reason)


EVENT_RULES = {
    "organizer_email": to_sink("organizers' addresses, comma separated"),
    "uuid": regenerated("the secret part of the organizer's links, sent by email from production"),
    "start_map_url": staging_links("a link an organizer typed in"),
}
RIDER_RULES = {
    "email": to_sink("the rider's address"),
    "first_name": kept("public on the event pages already; staging should look like production"),
    "last_name": kept("public on the event pages already; staging should look like production"),
    "comment": scrubbed("free text from the rider: may hold an address or a link"),
}

# table -> column -> rule. Tables emptied by sanitising are in EMPTIED below.
RULES: dict[str, dict[str, Rule]] = {
    "brevets": {
        **EVENT_RULES,
        "route_name": not_personal("the route's public name"),
        "info_question": scrubbed("the organizer's question to riders: may hold a link"),
    },
    "populaires": {
        **EVENT_RULES,
        "event_name": not_personal("the event's public name"),
        "short_name": not_personal("the event's public short name, used in its URL"),
        "entry_form_url": staging_links("a link an organizer typed in"),
    },
    "brevet_riders": {
        **RIDER_RULES,
        "info_answer": scrubbed("free text from the rider: may hold an address or a link"),
        "member_status": kept("the club's membership answer; needed to try the rider lists"),
    },
    "populaire_riders": RIDER_RULES,
    "wranglers": {
        "email": to_sink("the wrangler's login and address"),
        "password_hash": staging_password("production's passwords must not open staging"),
        "session_generation": not_personal("a counter; sessions are signed with staging's secret"),
    },
    "email_addresses": {
        "key": not_personal("the name of a configured address, e.g. admin_email"),
        "email": to_sink("the site's configured addresses (admin, sender, webmaster)"),
    },
    "links": {
        "key": not_personal("the name of a configured link, e.g. results_link"),
        "url": staging_links("the site's configured links"),
    },
    "page_generation": {
        "token": regenerated("no page cached from production's database may match"),
    },
}
# table -> why all its rows go.
EMPTIED: dict[str, str] = {
    "outbound_emails": "production's outbox: real recipients, bodies with secret links; "
    "a row left unsent would be sent from staging",
    "handled_requests": "ids of production's requests; staging's router gives its own",
    "login_failures": "production's failed logins (client addresses); staging counts its own",
}

# What happens to a text column with no rule of its own (or a rule that rewrites nothing).
SAFETY_NET = Rule("scrub", "any text column: the safety net", scrub)

# Column names that suggest personal data, contact details, links or secrets. Text (unbounded
# free text) columns count too, whatever their name.
PERSONAL_LOOKING = re.compile(
    r"mail|addr|name|comment|phone|mobile|contact|note|question|answer|birth|passw|hash|token"
    r"|secret|session|uuid|url|link|reply|(^|_)(ip|key)(_|$)",
    re.IGNORECASE,
)


def looks_personal(column: Column) -> bool:
    return bool(PERSONAL_LOOKING.search(column.name)) or isinstance(column.type, Text)


def rule_for(table: str, column: str) -> Rule | None:
    return RULES.get(table, {}).get(column)


def uncovered_columns(metadata: MetaData | None = None) -> list[str]:
    """'table.column' for each column that looks personal and has no rule (not in an emptied
    table). Declare such a column in RULES: with a rule, or `kept` / `not_personal` and why."""
    metadata = metadata if metadata is not None else _app_metadata()
    return sorted(
        f"{table.name}.{column.name}"
        for table in metadata.sorted_tables
        if table.name not in EMPTIED
        for column in table.columns
        if looks_personal(column) and rule_for(table.name, column.name) is None
    )


def stale_rules(metadata: MetaData | None = None) -> list[str]:
    """Rules naming a table or column the models no longer have."""
    metadata = metadata if metadata is not None else _app_metadata()
    stale = [name for name in EMPTIED if name not in metadata.tables]
    for table_name, columns in RULES.items():
        table = metadata.tables.get(table_name)
        stale += [
            f"{table_name}.{name}" for name in columns if table is None or name not in table.c
        ]
    return stale


def describe_rules(metadata: MetaData | None = None) -> list[tuple[str, str, str]]:
    """(table.column, action, reason) for every column of the models: the coverage at a glance."""
    metadata = metadata if metadata is not None else _app_metadata()
    rows = []
    for table in metadata.sorted_tables:
        for column in table.columns:
            name = f"{table.name}.{column.name}"
            if table.name in EMPTIED:
                rows.append((name, "emptied", EMPTIED[table.name]))
            elif (rule := rule_for(table.name, column.name)) is not None:
                rows.append((name, rule.action, rule.reason))
            elif isinstance(column.type, String):
                rows.append((name, SAFETY_NET.action, SAFETY_NET.reason))
            else:
                rows.append((name, "keep", "not text"))
    return rows


def _app_metadata() -> MetaData:
    from .models import metadata

    return metadata


# --- Sanitising -------------------------------------------------------------------------------


def sanitize(
    connection,
    *,
    sink_domain: str = DEFAULT_SINK_DOMAIN,
    production_domain: str,
    staging_domain: str,
    wrangler_password: str,
    sink_key: bytes,
) -> dict[str, int]:
    """Sanitise the database behind `connection` (a SQLAlchemy Connection) in its transaction;
    the caller commits: `with engine.begin() as connection: sanitize(connection, ...)`.

    The database must be at this code's alembic head. Returns the rows changed (or, for the
    outbox, deleted) per table. Running it again is harmless. Raises SanitizeError, before
    anything is committed, when anything personal or production's would be left."""
    options = _options(sink_domain, production_domain, staging_domain, wrangler_password, sink_key)
    return _sanitize(connection, options)


def _sanitize(connection, options: Options) -> dict[str, int]:
    _check_revision(connection)
    metadata = _app_metadata()
    counts = {}
    for table in metadata.sorted_tables:
        if table.name in EMPTIED:
            counts[table.name] = connection.execute(table.delete()).rowcount
        else:
            counts[table.name] = _sanitize_table(connection, table, options)
    leaks = find_leaks(
        connection, sink_domain=options.sink_domain, production_domain=options.production_domain
    )
    if leaks:
        raise SanitizeError("left after sanitising: " + "; ".join(map(str, leaks)))
    return counts


def _options(
    sink_domain, production_domain, staging_domain, wrangler_password, sink_key: bytes
) -> Options:
    sink_domain = sink_domain.strip().lower()
    production_domain = production_domain.strip().lower()
    staging_domain = staging_domain.strip().lower()
    if not is_reserved_domain(sink_domain):
        raise ValueError(
            f"sink domain {sink_domain!r} is not reserved (RFC 2606): "
            f"use one under .{', .'.join(RESERVED_TOP_LEVEL)} or {', '.join(RESERVED_DOMAINS)}"
        )
    if not production_domain or not staging_domain or production_domain == staging_domain:
        raise ValueError("production and staging domains must be given and differ")
    if len(wrangler_password) < 8:
        raise ValueError("the staging wrangler password needs at least 8 characters")
    if len(sink_key) < MIN_SINK_KEY:
        raise ValueError(f"the sink key needs at least {MIN_SINK_KEY} bytes")
    return Options(
        sink_domain, production_domain, staging_domain, _hash(wrangler_password), sink_key
    )


def is_reserved_domain(domain: str) -> bool:
    labels = domain.lower().split(".")
    return labels[-1] in RESERVED_TOP_LEVEL or any(
        in_domain(domain, reserved) for reserved in RESERVED_DOMAINS
    )


def _hash(password: str) -> str:
    """The app's own hashing, so the wrangler logs in through the usual check."""
    from .models import Wrangler

    wrangler = Wrangler()
    wrangler.set_password(password)
    return wrangler.password_hash


def _check_revision(connection) -> None:
    from .migrations import code_heads

    revision = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    if (revision,) != code_heads():
        raise SanitizeError(
            f"the database is at revision {revision}, this code's head is "
            f"{', '.join(code_heads())}: migrate it first, the rules follow the models"
        )


def _rewrites(table: Table) -> dict[str, Rule]:
    """column -> the rule that rewrites it: its own, or the safety net for any other text column.
    Columns whose rule changes every value (not the scrub) first."""
    rewrites = {}
    for column in table.columns:
        rule = rule_for(table.name, column.name)
        if rule is not None and rule.rewrite is not None:
            rewrites[column.name] = rule
        elif isinstance(column.type, String):
            rewrites[column.name] = SAFETY_NET
    return dict(sorted(rewrites.items(), key=lambda item: item[1].rewrite is scrub))


def _sanitize_table(connection, table: Table, options: Options) -> int:
    """Rewrite the table's ruled and text columns; returns the rows changed (a row counts once
    however many of its values change, and a row none of whose values change is not written)."""
    rewrites = _rewrites(table)
    if not rewrites:
        return 0
    if connection.dialect.name == "sqlite":
        return _sanitize_table_in_sql(connection, table, rewrites, options)
    return _sanitize_table_by_rows(connection, table, rewrites, options)


def _sanitize_table_in_sql(connection, table: Table, rewrites: dict[str, Rule], options) -> int:
    """One statement for the whole table, SQLite calling the rules' own functions:

        UPDATE t SET a = f(a), b = g(b) WHERE f(a) IS NOT a OR g(b) IS NOT b

    IS NOT is equality where NULL equals NULL (a NULL stays NULL), under the binary collation
    (Python's ==): the rows written and counted are the rows the rules change, as by rows. SQLite
    calls f(a) in WHERE and again in SET: the function remembers its last value (`_sql_rewrite`).
    The scrub is only called for a value SQLite cannot tell it keeps (`_may_hold`)."""
    functions, new = {}, {}
    for i, (name, rule) in enumerate(rewrites.items()):
        sql_name = f"randopony_sanitize_{i}"
        functions[sql_name] = (_sql_rewrite(rule, options), rule.deterministic)
        column = table.c[name]
        new[name] = getattr(func, sql_name)(column)
        if rule.rewrite is scrub:
            # scrub returns a value without "@" nor the production hostname as it is
            may_change = _may_hold(column, options.production_domain)
            new[name] = case((may_change, new[name]), else_=column)
    changed = or_(*(new[name].collate("BINARY").is_distinct_from(table.c[name]) for name in new))
    with _sql_functions(connection, functions):
        return connection.execute(table.update().values(new).where(changed)).rowcount


def _sql_rewrite(rule: Rule, options: Options) -> Callable:
    """The rule's rewrite as a function of one value; NULL stays NULL. A deterministic one keeps
    its last value and result, so the same value (the same row's, in WHERE then SET) is rewritten
    once."""
    rewrite = rule.rewrite
    if not rule.deterministic:
        return lambda value: None if value is None else rewrite(value, options)
    last = [None, None]

    def call(value):
        if value is None:
            return None
        if type(value) is not str or value != last[0]:
            last[:] = value, rewrite(value, options)
        return last[1]

    return call


def _sanitize_table_by_rows(connection, table: Table, rewrites: dict[str, Rule], options) -> int:
    """For other databases than SQLite: the rows in batches, rewritten in Python."""
    [key] = table.primary_key.columns
    statement = (
        table.update()
        .where(key == bindparam("old_key"))
        .values({name: bindparam(f"new_{name}") for name in rewrites})
    )
    changed, last = 0, None
    while True:
        query = select(key, *(table.c[name] for name in rewrites)).order_by(key).limit(BATCH)
        if last is not None:
            query = query.where(key > last)
        rows = connection.execute(query).all()
        if not rows:
            return changed
        updates = []
        for row in rows:
            old = row._mapping
            new = {
                name: (rule.rewrite(old[name], options) if old[name] is not None else None)
                for name, rule in rewrites.items()
            }
            if any(new[name] != old[name] for name in rewrites):
                updates.append(
                    {"old_key": row[0], **{f"new_{name}": new[name] for name in rewrites}}
                )
        if updates:
            connection.execute(statement, updates)
            changed += len(updates)
        last = rows[-1][0]


@contextmanager
def _sql_functions(connection, functions: dict[str, tuple[Callable, bool]]):
    """name -> (function of one value, deterministic): callable from SQL on the SQLite connection
    behind `connection` while inside, and gone after (they hold the options), with LIKE ignoring
    ASCII letters' case. SQLite only says that a function failed: the function's own exception is
    raised instead."""
    driver = connection.connection.driver_connection
    errors: list[Exception] = []

    def recording(function):
        def call(value):
            try:
                return function(value)
            except Exception as error:
                errors.append(error)
                raise

        return call

    for name, (function, deterministic) in functions.items():
        driver.create_function(name, 1, recording(function), deterministic=deterministic)
    # SQLite's default, which the SQL around the functions counts on (`_may_hold`).
    connection.exec_driver_sql("PRAGMA case_sensitive_like = OFF")
    try:
        yield
    except DBAPIError as error:
        if errors:
            raise errors[0] from error
        raise
    finally:
        for name in functions:
            driver.create_function(name, 1, None)


# --- Checking what is left --------------------------------------------------------------------


@dataclass(frozen=True)
class Leak:
    table: str
    column: str
    what: str
    value: str

    def __str__(self) -> str:
        return f"{self.table}.{self.column}: {self.what} in {self.value[:80]!r}"


def find_leaks(
    connection, *, sink_domain: str = DEFAULT_SINK_DOMAIN, production_domain: str, limit=20
) -> list[Leak]:
    """Addresses outside the sink and the production hostname, in every text column of every
    table of the database (not only the models' tables), each value judged by `leaks_in`.

    On SQLite the values are judged where they are, by `leaks_in` as a SQL function, and only
    those that leak come back. SQL passes over a value only where it can tell that `leaks_in`
    finds nothing in it (`_may_hold`, `_only_a_sink_address`): the scan does not depend on what
    the rules did. Elsewhere only values with "@" or the production hostname (LIKE) are read."""
    if connection.dialect.name != "sqlite":
        return _find_leaks(connection, sink_domain, production_domain, limit, in_sql=False)

    def leaking(value) -> bool:
        return bool(leaks_in(str(value), sink_domain, production_domain))

    with _sql_functions(connection, {"randopony_leaking": (leaking, True)}):
        return _find_leaks(connection, sink_domain, production_domain, limit, in_sql=True)


def _find_leaks(connection, sink_domain, production_domain, limit, *, in_sql) -> list[Leak]:
    leaks = []
    inspector = inspect(connection)
    for table_name in inspector.get_table_names():
        for info in inspector.get_columns(table_name):
            if not isinstance(info["type"], String):
                continue
            name = info["name"]
            col = sql_column(name)
            query = select(col).select_from(sql_table(table_name, col))
            if in_sql:
                query = query.where(_may_hold(col, production_domain))
                sink_only = _only_a_sink_address(col, sink_domain, production_domain)
                if sink_only is not None:
                    query = query.where(~sink_only)
                query = query.where(func.randopony_leaking(col)).limit(limit - len(leaks))
            else:
                query = query.where(col.contains("@") | col.contains(production_domain.lower()))
            for (value,) in connection.execute(query).all():
                leaks += [
                    Leak(table_name, name, what, str(value))
                    for what, _found in leaks_in(str(value), sink_domain, production_domain)
                ]
                if len(leaks) >= limit:
                    return leaks[:limit]
    return leaks


def _may_hold(col, production_domain: str):
    """SQL, false only for text that holds neither "@" nor the production hostname, not even as
    Python reads it in lower case (str.lower) or ignoring case (IGNORECASE): then `scrub` returns
    it as it is and `leaks_in` finds nothing in it. LIKE is cheap, but it stops at a NUL, only
    knows ASCII letters' case (`_sql_functions` makes sure it ignores that case) and may never
    match a blob: text with a NUL or one of CASE_LIKE_ASCII is left to Python, as is a blob, and
    every value when the hostname is not ASCII. (A number holds neither.)"""
    domain = production_domain.lower()
    if not domain.isascii():
        return col.is_not(None)
    return or_(
        col.like("%@%"),
        col.like(f"%{domain}%"),  # a "_" or "%" in it matches more: no harm
        and_(
            _not_plain_ascii(col),
            or_(
                func.instr(col, func.char(0)) > 0,
                *(func.instr(col, character) > 0 for character in CASE_LIKE_ASCII),
            ),
        ),
        func.typeof(col) == "blob",
    )


def _not_plain_ascii(col):
    """SQL: text with a character outside ASCII, or a NUL (its length in characters, which
    length() counts up to a NUL, is not its length in bytes)."""
    return func.length(col) != func.length(cast(col, LargeBinary))


def _only_a_sink_address(col, sink_domain: str, production_domain: str):
    """SQL, true only for a value in which `leaks_in` cannot find anything, so it need not be
    asked: ASCII text without a NUL whose only "@" starts its end, "@" + the sink domain (in any
    case), and without the production hostname. Any address ADDRESS_RE finds in it holds that
    "@", and so ends with the sink domain whole (its characters all continue a domain). None
    when the domains are not plain ASCII hostnames (then no value is passed over this way)."""
    if not (PLAIN_HOSTNAME.fullmatch(sink_domain) and production_domain.isascii()):
        return None
    return and_(
        col.like(f"%@{sink_domain}"),
        ~col.like("%@%@%"),
        ~col.like(f"%{production_domain.lower()}%"),
        ~_not_plain_ascii(col),
        func.typeof(col) == "text",
    )


def leaks_in(value: str, sink_domain: str, production_domain: str) -> list[tuple[str, str]]:
    """(what, the text found) for each address outside the sink and each production hostname in
    `value`: how a value is judged, in the database and in the rider list files alike."""
    found = [
        ("an address outside the sink", match.group())
        for match in ADDRESS_RE.finditer(value)
        if not is_sink_address(match.group(), sink_domain)
    ]
    host_re = _host_re(production_domain.lower())
    found += [("the production hostname", match.group()) for match in host_re.finditer(value)]
    return found


@lru_cache(maxsize=8)
def _host_re(domain: str) -> re.Pattern:
    return re.compile(host_pattern(domain), re.IGNORECASE)


# --- What the sanitised database holds ------------------------------------------------------


def row_counts(connection) -> dict[str, int]:
    """Rows per table, for every table in the database (not only the models' tables)."""
    return {
        name: connection.execute(select(func.count()).select_from(sql_table(name))).scalar()
        for name in inspect(connection).get_table_names()
    }


def wrangler_logins(connection) -> list[str]:
    wranglers = _app_metadata().tables["wranglers"]
    return list(connection.execute(select(wranglers.c.email).order_by(wranglers.c.id)).scalars())


# --- Command line -----------------------------------------------------------------------------


def main(argv=None) -> int:
    """python -m app.sanitize staging.ini --production-domain D --staging-domain D
    [--rider-lists-from MIRROR --rider-lists-to DIR]

    Sanitises the database of a staging ini (never a production one) in one transaction, then
    VACUUMs it so no old value survives in free pages. The staging wrangler password comes from
    RANDOPONY_WRANGLER_PASSWORD (never the command line); the sink domain is the first of the
    ini's mail.only_to_domains, the domains its mail guard lets through. With the rider list
    options, the rider lists mirrored from production are written, sanitised and under the
    events' new uuids, to DIR, which must not exist or be empty (app/sanitize_files.py). Prints
    one line of JSON: the rows changed per table, "rows" (rows per table after sanitising),
    "wranglers" (the staging logins) and, with the rider list options, "files". Exits 2, with
    the database and DIR as they were, when it refuses."""
    from pyramid.paster import get_appsettings

    from . import settings as app_settings
    from .mail import allowed_domains
    from .models import get_engine
    from .sanitize_files import RiderListCopy

    parser = argparse.ArgumentParser(prog="python -m app.sanitize", description=main.__doc__)
    parser.add_argument("config_uri", help="the staging release's ini, e.g. staging.ini")
    parser.add_argument("--production-domain", required=True)
    parser.add_argument("--staging-domain", required=True)
    parser.add_argument(
        "--rider-lists-from", metavar="MIRROR", help="production's rider lists, as mirrored"
    )
    parser.add_argument(
        "--rider-lists-to", metavar="DIR", help="where staging's rider lists are written"
    )
    parser.add_argument(
        "--sink-key-file",
        metavar="FILE",
        required=True,
        help="the host's sink key (readable by its owner only): sink addresses are keyed by it",
    )
    args = parser.parse_args(argv)
    if (args.rider_lists_from is None) != (args.rider_lists_to is None):
        parser.error("--rider-lists-from and --rider-lists-to go together: give both or neither")
    settings = app_settings.load(get_appsettings(args.config_uri))
    if settings["production_deployment"]:
        print(f"{args.config_uri} is a production ini: refusing to sanitise", file=sys.stderr)
        return 2
    rider_lists = None
    if args.rider_lists_from is not None:
        rider_lists = RiderListCopy(args.rider_lists_from, args.rider_lists_to)
        if refusal := rider_lists.refusal():
            print(f"sanitize: {refusal}", file=sys.stderr)
            return 2
    try:
        sink_key = read_sink_key(args.sink_key_file)
    except ValueError as error:
        print(f"sanitize: {error}", file=sys.stderr)
        return 2
    engine = get_engine(settings)
    done = False
    try:
        options = _options(
            (allowed_domains(settings) or [DEFAULT_SINK_DOMAIN])[0],
            args.production_domain,
            args.staging_domain,
            os.environ.get("RANDOPONY_WRANGLER_PASSWORD", ""),
            sink_key,
        )
        # Files are written inside the transaction: if they are refused, so is the database.
        with engine.begin() as connection:
            report = _sanitize_and_report(connection, options, rider_lists)
        if engine.dialect.name == "sqlite":
            _vacuum(engine)
        done = True
    except (SanitizeError, ValueError) as error:
        print(f"sanitize: {error}", file=sys.stderr)
        return 2
    finally:
        if not done and rider_lists is not None:
            rider_lists.remove()
        engine.dispose()
    print(json.dumps(report, sort_keys=True))
    return 0


def read_sink_key(path: str) -> bytes:
    """The key file's bytes; refused when others may read it (it would let them hash guesses)."""
    try:
        with open(path, "rb") as f:
            if os.fstat(f.fileno()).st_mode & 0o077:
                raise ValueError(f"the sink key {path} is readable by others: chmod 0400 it")
            key = f.read().strip()
    except OSError as error:
        raise ValueError(f"cannot read the sink key: {error}") from None
    if len(key) < MIN_SINK_KEY:
        raise ValueError(f"the sink key {path} is shorter than {MIN_SINK_KEY} bytes")
    return key


def _sanitize_and_report(connection, options: Options, rider_lists) -> dict:
    from .sanitize_files import event_uuids

    before = event_uuids(connection)
    report: dict = _sanitize(connection, options)
    if rider_lists is not None:
        after = event_uuids(connection)
        renamed = {old: after[key] for key, old in before.items() if key in after}
        report["files"] = rider_lists.write(renamed, options)
    report["rows"] = row_counts(connection)
    report["wranglers"] = wrangler_logins(connection)
    return report


def _vacuum(engine) -> None:
    """Rewrite the file: deleted and overwritten values no longer linger in free pages. On the
    raw connection, outside any transaction (the engine's begin hook would start one)."""
    raw = engine.raw_connection()
    try:
        raw.driver_connection.execute("VACUUM")
    finally:
        raw.close()


if __name__ == "__main__":
    sys.exit(main())
