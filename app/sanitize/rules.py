"""What sanitising replaces by what: the rules, and the functions they rewrite with.

An address goes to a sink address (`sink_address`), a link to production goes to staging and free
text is scrubbed of both (`scrub`), a password becomes the staging one and a secret a new uuid.
RULES says once, for every column of the models that needs it, which of these happens and why; a
column with no rule whose name or type says it may hold personal data is reported by
`uncovered_columns` (a test fails on any), so a new model column cannot slip through unnoticed.
Any other text column gets the SAFETY_NET, the scrub.

The database (database.py) and the rider lists (files.py) are rewritten with these same functions
and the same `Options`, so an address becomes the same sink address in both.
"""

import hashlib
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache

from sqlalchemy import Column, MetaData, String, Text

from .. import models
from .sqlite import CASE_LIKE_ASCII

# RFC 2606: .invalid can never resolve, so mail to it cannot reach anyone.
DEFAULT_SINK_DOMAIN = "sink.invalid"
RESERVED_TOP_LEVEL = ("invalid", "localhost", "test", "example")
RESERVED_DOMAINS = ("example.com", "example.net", "example.org")
# 80 bits: distinct for any number of addresses a club will ever have (birthday bound 2**40).
DIGEST_LENGTH = 20
# The sink key is at least this long (bytes), so the hashes cannot be tried address by address.
MIN_SINK_KEY = 16


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
    # for the same value (database.py's `_sql_rewrite`). A rewrite that draws something random
    # must say False.
    deterministic: bool = True


# --- Addresses and links --------------------------------------------------------------------

# An address inside free text or a link. Deliberately loose on the local part's start (it may
# catch only the tail of an odd one): what matters is that the domain after "@" is caught.
ADDRESS = r"[\w.%+'-]+@[\w-]+(?:\.[\w-]+)*"
LIST_SEPARATOR = re.compile(r"[,;]")
# ADDRESS in parts, for `address_spans`: an "@" that a domain follows, the local part read
# backwards from it, the rest of the domain.
_AT = re.compile(r"@[\w-]")
_LOCAL_PART = re.compile(r"[\w.%+'-]*")
_DOMAIN_REST = re.compile(r"[\w-]*(?:\.[\w-]+)*")


def address_spans(value: str) -> Iterator[tuple[int, int]]:
    """(start, end) of each address in `value`, exactly as re.finditer(ADDRESS) finds them, but
    found from each "@" instead of tried at every character: the pattern's local part makes the
    regex engine read every word of free text again from each of its letters, six times slower
    on riders' comments (tests/test_sanitize.py checks they agree). After a match, the next one
    starts at its end at the earliest, as finditer's does."""
    pos = 0
    while (at := _AT.search(value, pos)) is not None:
        at = at.start()
        local = _LOCAL_PART.match(value[pos:at][::-1]).end()
        if not local:
            pos = at + 1
            continue
        end = _DOMAIN_REST.match(value, at + 2).end()
        yield at - local, end
        pos = end


def may_hold_hostname(value: str, domain: str) -> bool:
    """False only when `domain` (lower case) matched ignoring case (re.IGNORECASE) cannot be in
    `value`: an ASCII hostname is then in the lower-cased text, unless the text holds one of the
    characters Python takes for ASCII letters (CASE_LIKE_ASCII, checked by the tests)."""
    if domain in value.lower() or not domain.isascii():
        return True
    return not value.isascii() and _CASE_LIKE_ASCII.search(value) is not None


_CASE_LIKE_ASCII = re.compile(f"[{CASE_LIKE_ASCII}]")


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
    lowered = address.lower()
    local, at, domain = lowered.rpartition("@")
    if at and local:  # is_sink_address, inline: millions of calls
        sink = sink_domain.lower()
        if domain == sink or domain.endswith("." + sink):
            return address
    inner, outer = _hmac_pads(key)
    inner = inner.copy()
    inner.update(lowered.encode())
    outer = outer.copy()
    outer.update(inner.digest())
    return f"{outer.hexdigest()[:DIGEST_LENGTH]}@{sink_domain}"


@lru_cache(maxsize=8)
def _hmac_pads(key: bytes):
    """HMAC-SHA256 (RFC 2104) with its two keyed states made once: `hmac.new` makes them again
    for every address, which was half of a sink address's time (millions per refresh). A test
    checks the result against `hmac.new`."""
    if len(key) > hashlib.sha256().block_size:
        key = hashlib.sha256(key).digest()
    key = key.ljust(hashlib.sha256().block_size, b"\0")
    inner = hashlib.sha256(bytes(byte ^ 0x36 for byte in key))
    outer = hashlib.sha256(bytes(byte ^ 0x5C for byte in key))
    return inner, outer


def sink_address_list(value: str, options: Options) -> str:
    """'a@x, b@y' -> 'a.x.<hash>@sink, b.y.<hash>@sink' (organizer_email holds lists)."""
    if "," not in value and ";" not in value:  # one address (or none): the same, sooner
        address = value.strip()
        return sink_address(address, options.sink_domain, options.sink_key) if address else ""
    addresses = [a.strip() for a in LIST_SEPARATOR.split(value) if a.strip()]
    return ", ".join(sink_address(a, options.sink_domain, options.sink_key) for a in addresses)


def scrub(value: str, options: Options) -> str:
    """Free text or a link: addresses in it go to the sink, the production hostname becomes the
    staging one. A value with neither comes back unchanged.

    What re.sub of "(?P<address>ADDRESS)|(?P<host>the hostname)" (ignoring case) does, found
    faster (`address_spans`): from left to right, whichever starts first, an address if both
    start at the same character (tests/test_sanitize.py checks it against that substitution)."""
    domain = options.production_domain
    if "@" not in value and domain not in value.lower():
        return value
    hosts = hostname_re(domain) if may_hold_hostname(value, domain) else None
    parts, pos = [], 0
    while True:
        address = next(address_spans(value[pos:]), None) if "@" in value[pos:] else None
        if address is not None:
            address = (address[0] + pos, address[1] + pos)
        host = hosts.search(value, pos) if hosts is not None else None
        if address is None and host is None:
            break
        if host is None or (address is not None and address[0] <= host.start()):
            start, end = address
            new = sink_address(value[start:end], options.sink_domain, options.sink_key)
        else:
            (start, end), new = host.span(), options.staging_domain
        parts += [value[pos:start], new]
        pos = end
    return "".join(parts) + value[pos:]


@lru_cache(maxsize=8)
def hostname_re(domain: str) -> re.Pattern:
    """The hostname, ignoring case, as a whole hostname (`host_pattern`)."""
    return re.compile(host_pattern(domain), re.IGNORECASE)


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
    metadata = metadata if metadata is not None else models.metadata
    return sorted(
        f"{table.name}.{column.name}"
        for table in metadata.sorted_tables
        if table.name not in EMPTIED
        for column in table.columns
        if looks_personal(column) and rule_for(table.name, column.name) is None
    )


def stale_rules(metadata: MetaData | None = None) -> list[str]:
    """Rules naming a table or column the models no longer have."""
    metadata = metadata if metadata is not None else models.metadata
    stale = [name for name in EMPTIED if name not in metadata.tables]
    for table_name, columns in RULES.items():
        table = metadata.tables.get(table_name)
        stale += [
            f"{table_name}.{name}" for name in columns if table is None or name not in table.c
        ]
    return stale


def describe_rules(metadata: MetaData | None = None) -> list[tuple[str, str, str]]:
    """(table.column, action, reason) for every column of the models: the coverage at a glance."""
    metadata = metadata if metadata is not None else models.metadata
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


# --- The options every rewrite is given ------------------------------------------------------


def checked_options(
    sink_domain, production_domain, staging_domain, wrangler_password, sink_key: bytes
) -> Options:
    """The Options of one run, domains lower-cased; ValueError for a sink domain that could
    deliver, production and staging domains that are missing or alike, a short staging password
    or a short sink key."""
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
    wrangler = models.Wrangler()
    wrangler.set_password(password)
    return wrangler.password_hash
