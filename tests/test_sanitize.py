"""Sanitising a copy of production's database for staging: every address goes to the sink, links
to production go to staging, secrets are reset, the outbox is emptied; and a model column that may
hold personal data cannot be added without a rule."""

import hashlib
import hmac
import json
import os
import re
import sqlite3
import sys
from contextlib import closing
from datetime import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Column, Integer, MetaData, String, Table, Text, inspect, select, text

from app.mail import unsent_email_ids
from app.models import (
    Link,
    OutboundEmail,
    Wrangler,
    get_engine,
    get_session_factory,
    metadata,
)
from app.sanitize import SanitizeError, cli, database, leaks, rules, sanitize, sink_address
from app.sanitize.sqlite import CASE_LIKE_ASCII
from tests.conftest import WRANGLER_EMAIL, WRANGLER_PASSWORD, fuzz_settings
from tests.factories import make_brevet, make_brevet_rider, make_populaire, make_populaire_rider

PRODUCTION = "randopony.localhost"
STAGING = "staging.randopony.localhost"
SINK = "sink.invalid"
STAGING_PASSWORD = "staging wrangler pw"
# The host's sink key, as deploy.flows.sync makes one (tests/deploy/test_sync.py checks that one).
SINK_KEY = b"0123456789abcdef-test-sink-key"

# The checks below are written independently of app/sanitize/'s own patterns.
EMAIL_LIKE = re.compile(r"[^\s@,;:<>()\"'/]+@([A-Za-z0-9.-]+[A-Za-z0-9])")
PRODUCTION_HOST = re.compile(r"(?<![\w.-])randopony\.localhost(?![\w-])", re.IGNORECASE)


# --- Rule coverage ----------------------------------------------------------------------------


def test_every_personal_looking_column_of_the_models_has_a_rule():
    assert rules.uncovered_columns(metadata) == [], (
        "declare these columns in app/sanitize/rules.py's RULES "
        "(a rule, or kept/not_personal and why)"
    )
    assert rules.stale_rules(metadata) == []


def test_a_new_personal_column_without_a_rule_is_reported(monkeypatch):
    copy = MetaData()
    for table in metadata.sorted_tables:
        table.to_metadata(copy)
    copy.tables["brevet_riders"].append_column(Column("emergency_contact_email", String(254)))
    Table(
        "club_members",
        copy,
        Column("id", Integer, primary_key=True),
        Column("phone", String(20)),
        Column("notes_for_the_club", Text),
        Column("joined_year", Integer),
    )
    assert rules.uncovered_columns(copy) == [
        "brevet_riders.emergency_contact_email",
        "club_members.notes_for_the_club",
        "club_members.phone",
    ]

    # Declaring them covers them: a rule, or saying it is not personal.
    declared = dict(rules.RULES)
    declared["brevet_riders"] = {
        **declared["brevet_riders"],
        "emergency_contact_email": rules.to_sink("a contact's address"),
    }
    declared["club_members"] = {
        "phone": rules.kept("for the test"),
        "notes_for_the_club": rules.not_personal("for the test"),
    }
    monkeypatch.setattr(rules, "RULES", declared)
    assert rules.uncovered_columns(copy) == []
    assert rules.stale_rules(copy) == []
    assert "club_members.phone" in rules.stale_rules(metadata)


# --- Addresses ----------------------------------------------------------------------------------


def test_sink_addresses_are_deterministic_distinct_and_stable():
    ada = sink_address("ada@example.org", SINK, SINK_KEY)
    assert ada.endswith("@" + SINK)
    # riders' addresses are compared lower-cased
    assert sink_address(" Ada@Example.ORG ", SINK, SINK_KEY) == ada
    assert sink_address(ada, SINK, SINK_KEY) == ada  # sanitising twice changes nothing
    assert sink_address("a.b@c.org", SINK, SINK_KEY) != sink_address("a@b.c.org", SINK, SINK_KEY)
    long_one = sink_address("x" * 60 + "@" + "y" * 60 + ".example.org", SINK, SINK_KEY)
    assert len(long_one.split("@")[0]) <= 64


@pytest.mark.parametrize("key", [SINK_KEY, b"k" * 64, b"a longer key than a block " * 4])
def test_a_sink_address_is_the_hmac_sha256_of_the_lower_cased_address(key):
    """rules.py makes HMAC's keyed states once per key, not once per address."""
    for address in ("Ada@Example.ORG", "  b.rider+x@shaw.ca ", "名前@例え.jp"):
        digest = hmac.new(key, address.strip().lower().encode(), hashlib.sha256).hexdigest()
        assert sink_address(address, SINK, key) == f"{digest[:20]}@{SINK}"


def test_a_sink_address_gives_nothing_of_the_address_away():
    """john.smith.gmail.com.d0c648bc36@sink.invalid gave the production address away: the sink
    address is a keyed hash, with nothing of the address in it and no way to check a guess
    without the host's key."""
    original = "john.smith@gmail.com"
    sunk = sink_address(original, SINK, SINK_KEY)
    local = sunk.split("@")[0]
    assert re.fullmatch(r"[0-9a-f]{20}", local)
    for piece in ("john", "smith", "gmail"):
        assert piece not in local
    # An unkeyed hash of the address (a guess anyone can check) is not in it either.
    assert hashlib.sha256(original.encode()).hexdigest()[:10] not in local
    # Another host's key gives another sink address.
    assert sink_address(original, SINK, b"another host's sink key") != sunk


def test_a_short_or_missing_sink_key_is_refused(app_settings):
    engine = get_engine(app_settings)
    with engine.begin() as connection, pytest.raises(ValueError, match="sink key"):
        sanitize(connection, **options(sink_key=b"short"))


def test_a_sink_domain_that_could_reach_someone_is_refused(app_settings):
    engine = get_engine(app_settings)
    with engine.begin() as connection, pytest.raises(ValueError, match="not reserved"):
        sanitize(connection, **options(sink_domain="gmail.com"))
    engine.dispose()


# Free text made of what addresses and hostnames are made of, and of what ends them.
FRAGMENTS = [
    "a",
    "Z",
    "0",
    "_",
    ".",
    "-",
    "%",
    "+",
    "'",
    "@",
    "@@",
    " ",
    "\n",
    ",",
    "(",
    ")",
    "/",
    ":",
    "é",
    "名",
    "\u0130",
    "\u0131",
    "\u017f",
    "\u212a",
    "\x00",
    "ada",
    "ex.org",
    "sink.invalid",
    PRODUCTION,
    PRODUCTION.upper(),
    "staging.",
    "randopony",
    "localhoſt",
    ".evil",
    "-x",
]
FREE_TEXT = st.lists(st.sampled_from(FRAGMENTS), max_size=24).map("".join)


@fuzz_settings(1000)
@given(FREE_TEXT)
def test_addresses_are_found_where_the_address_pattern_finds_them(value):
    assert list(rules.address_spans(value)) == [
        match.span() for match in re.finditer(rules.ADDRESS, value)
    ]


def scrub_by_the_pattern(value: str, options: rules.Options) -> str:
    """The scrub as a single substitution (how app/sanitize/rules.py wrote it first)."""
    if "@" not in value and options.production_domain not in value.lower():
        return value
    pattern = re.compile(
        rf"(?P<address>{rules.ADDRESS})|(?P<host>{rules.host_pattern(options.production_domain)})",
        re.IGNORECASE,
    )

    def replace(match):
        if match.group("address"):
            return sink_address(match.group("address"), options.sink_domain, options.sink_key)
        return options.staging_domain

    return pattern.sub(replace, value)


@fuzz_settings(1000)
@given(FREE_TEXT)
def test_the_scrub_is_the_substitution_of_addresses_and_the_hostname(value):
    options = rules.Options(SINK, PRODUCTION, STAGING, "", SINK_KEY)
    assert rules.scrub(value, options) == scrub_by_the_pattern(value, options)


# --- Sanitising a database --------------------------------------------------------------------


def options(**overrides):
    return {
        "sink_domain": SINK,
        "production_domain": PRODUCTION,
        "staging_domain": STAGING,
        "wrangler_password": STAGING_PASSWORD,
        "sink_key": SINK_KEY,
        **overrides,
    }


@pytest.fixture
def production_like(db):
    """The test database filled as production's could be: riders on two events, organizers'
    lists, a second wrangler, links to production, addresses in free text, unsent mail."""
    return fill_production_like(db)


def fill_production_like(db) -> dict:
    brevet = make_brevet(
        db,
        organizer_email="org1@example.com, Org2@Example.com",
        start_map_url=f"https://{PRODUCTION}/maps/lm200",
        info_question=f"Drop bag? See https://{PRODUCTION}/help or ask bags@club.example.net",
    )
    populaire = make_populaire(
        db,
        organizer_email="org1@example.com",
        entry_form_url=f"http://{PRODUCTION}:8080/forms/pop.pdf",
    )
    make_brevet_rider(db, brevet, email="ada@example.org", first_name="Ada", last_name="L")
    make_brevet_rider(
        db,
        brevet,
        email="eddy@example.org",
        comment="or text me at eddy.m@mail.example.com",
        info_answer=f"yes, as on {PRODUCTION}/brevets",
    )
    make_brevet_rider(db, brevet, email="ada.example@org.example.net", first_name="Not Ada")
    make_populaire_rider(db, populaire, email="ada@example.org", first_name="Ada", last_name="L")
    wrangler = Wrangler(email="second@example.com")
    wrangler.set_password("second's production password")
    db.add(wrangler)
    db.execute(
        Link.__table__.update()
        .where(Link.key == "results_link")
        .values(url=f"https://{PRODUCTION}/results/")
    )
    db.add(
        OutboundEmail(
            to_addrs="ada@example.org",
            subject="Sent",
            body=f"https://{PRODUCTION}/",
            sent_at=datetime.now(),
        )
    )
    db.add(
        OutboundEmail(
            to_addrs="org1@example.com, eddy@example.org",
            reply_to="org2@example.com",
            subject="Pending",
            body=f"Riders: https://{PRODUCTION}/brevets/LM/200/x/rider_emails/{brevet.uuid}",
        )
    )
    db.commit()
    return {"brevet": brevet, "populaire": populaire}


def run_sanitize(app_settings, **overrides) -> dict:
    engine = get_engine(app_settings)
    try:
        with engine.begin() as connection:
            return sanitize(connection, **options(**overrides))
    finally:
        engine.dispose()


def database_path(app_settings) -> str:
    return app_settings["sqlalchemy.url"].removeprefix("sqlite:///")


def leftovers(app_settings) -> list[tuple[str, str, str]]:
    """Every text value in every column of every table (SQLite keeps text in any column) that
    holds an address outside the sink or the production hostname."""
    found = []
    with sqlite3.connect(database_path(app_settings)) as connection:
        tables = [
            name
            for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")
        ]
        for table in tables:
            cursor = connection.execute(f'SELECT * FROM "{table}"')
            names = [d[0] for d in cursor.description]
            for row in cursor:
                for name, value in zip(names, row, strict=True):
                    if not isinstance(value, str):
                        continue
                    for domain in EMAIL_LIKE.findall(value):
                        if domain.lower() != SINK:
                            found.append((table, name, value))
                    if PRODUCTION_HOST.search(value):
                        found.append((table, name, value))
    return found


def rows(app_settings, sql) -> list[tuple]:
    with sqlite3.connect(database_path(app_settings)) as connection:
        return connection.execute(sql).fetchall()


def test_no_address_outside_the_sink_nor_production_host_is_left_anywhere(
    app_settings, production_like
):
    before = {(table, column) for table, column, _ in leftovers(app_settings)}
    assert {
        ("brevets", "organizer_email"),
        ("brevets", "start_map_url"),
        ("brevets", "info_question"),
        ("populaires", "entry_form_url"),
        ("brevet_riders", "email"),
        ("brevet_riders", "comment"),
        ("brevet_riders", "info_answer"),
        ("populaire_riders", "email"),
        ("wranglers", "email"),
        ("email_addresses", "email"),
        ("links", "url"),
        ("outbound_emails", "to_addrs"),
        ("outbound_emails", "body"),
    } <= before  # the check below is not vacuous

    counts = run_sanitize(app_settings)

    assert leftovers(app_settings) == []
    assert counts["brevet_riders"] == 3 and counts["populaire_riders"] == 1
    assert counts["wranglers"] == 2 and counts["outbound_emails"] == 2


def test_distinct_addresses_stay_distinct_and_equal_ones_equal(app_settings, production_like):
    def rider_emails():
        return rows(
            app_settings,
            "SELECT 'b', id, email FROM brevet_riders UNION ALL "
            "SELECT 'p', id, email FROM populaire_riders ORDER BY 1, 2",
        )

    before = rider_emails()
    run_sanitize(app_settings)
    after = rider_emails()

    mapping = {old: new for (_, _, old), (_, _, new) in zip(before, after, strict=True)}
    assert len(set(mapping.values())) == len(mapping) == 3
    assert all(new == sink_address(old, SINK, SINK_KEY) for old, new in mapping.items())
    [(brevet_org,), (populaire_org,)] = rows(
        app_settings,
        "SELECT organizer_email FROM brevets UNION ALL SELECT organizer_email FROM populaires",
    )
    org1, org2 = brevet_org.split(", ")
    assert org1 == populaire_org == sink_address("org1@example.com", SINK, SINK_KEY)
    assert org2 == sink_address("org2@example.com", SINK, SINK_KEY)
    assert rows(app_settings, "SELECT key, email FROM email_addresses ORDER BY key") == [
        ("admin_email", sink_address("pony-admin@example.com", SINK, SINK_KEY)),
        ("club_webmaster", sink_address("webmaster@example.com", SINK, SINK_KEY)),
        ("from_randopony", sink_address("randopony@example.com", SINK, SINK_KEY)),
    ]
    # Names, comments' words and the rest of a rider stay.
    assert rows(app_settings, "SELECT comment FROM brevet_riders WHERE comment IS NOT NULL") == [
        (f"or text me at {sink_address('eddy.m@mail.example.com', SINK, SINK_KEY)}",)
    ]


def test_links_to_production_point_at_staging_and_other_links_stay(app_settings, production_like):
    club_links = dict(rows(app_settings, "SELECT key, url FROM links WHERE url NOT LIKE '%pony%'"))
    run_sanitize(app_settings)
    run_sanitize(app_settings)  # twice: staging's own hostname is not rewritten again
    links = dict(rows(app_settings, "SELECT key, url FROM links"))
    assert links["results_link"] == f"https://{STAGING}/results/"
    assert club_links.items() <= links.items()
    assert rows(app_settings, "SELECT start_map_url, info_question FROM brevets") == [
        (
            f"https://{STAGING}/maps/lm200",
            f"Drop bag? See https://{STAGING}/help or ask "
            f"{sink_address('bags@club.example.net', SINK, SINK_KEY)}",
        )
    ]
    assert rows(app_settings, "SELECT entry_form_url FROM populaires") == [
        (f"http://{STAGING}:8080/forms/pop.pdf",)
    ]


def test_wranglers_log_in_with_the_staging_password_only(
    app_settings, production_like, testapp, login
):
    run_sanitize(app_settings)
    with get_session_factory(get_engine(app_settings))() as db:
        wranglers = db.scalars(select(Wrangler).order_by(Wrangler.id)).all()
        assert [w.email for w in wranglers] == [
            sink_address(WRANGLER_EMAIL, SINK, SINK_KEY),
            sink_address("second@example.com", SINK, SINK_KEY),
        ]
        assert all(w.check_password(STAGING_PASSWORD) for w in wranglers)
        assert not wranglers[0].check_password(WRANGLER_PASSWORD)
        assert not wranglers[1].check_password("second's production password")

    assert login(WRANGLER_EMAIL, WRANGLER_PASSWORD).status_int == 200  # the form again
    assert login(sink_address(WRANGLER_EMAIL, SINK, SINK_KEY), WRANGLER_PASSWORD).status_int == 200
    assert login(sink_address(WRANGLER_EMAIL, SINK, SINK_KEY), STAGING_PASSWORD).status_int == 302


def test_production_secret_links_stop_working_and_the_page_token_changes(
    app_settings, production_like, testapp
):
    brevet = production_like["brevet"]
    old_link = f"/brevets/LM/200/{brevet.url_date}/rider_emails/{brevet.uuid}"
    assert "ada@example.org" in testapp.get(old_link).text
    [(old_token,)] = rows(app_settings, "SELECT token FROM page_generation")

    run_sanitize(app_settings)

    testapp.get(old_link, status=404)
    [(new_uuid,)] = rows(app_settings, f"SELECT uuid FROM brevets WHERE id = {brevet.id}")
    assert new_uuid != brevet.uuid
    new_link = f"/brevets/LM/200/{brevet.url_date}/rider_emails/{new_uuid}"
    assert testapp.get(new_link).text.count(f"@{SINK}") == 3
    assert rows(app_settings, "SELECT token FROM page_generation") != [(old_token,)]


def test_the_outbox_has_nothing_left_to_send(app_settings, production_like):
    factory = get_session_factory(get_engine(app_settings))
    assert len(unsent_email_ids(factory)) == 1
    run_sanitize(app_settings)
    assert unsent_email_ids(factory) == []
    assert rows(app_settings, "SELECT count(*) FROM outbound_emails") == [(0,)]


def test_sanitizing_twice_changes_no_address_again(app_settings, production_like):
    run_sanitize(app_settings)
    first = rows(app_settings, "SELECT email, comment FROM brevet_riders ORDER BY id")
    counts = run_sanitize(app_settings)
    assert rows(app_settings, "SELECT email, comment FROM brevet_riders ORDER BY id") == first
    assert counts["brevet_riders"] == counts["populaire_riders"] == 0
    assert counts["email_addresses"] == counts["outbound_emails"] == 0
    assert leftovers(app_settings) == []


def test_anything_left_outside_the_models_refuses_the_whole_sanitising(
    app_settings, production_like
):
    """A table the models do not know (here, a broker's) is scanned too; nothing is committed."""
    with sqlite3.connect(database_path(app_settings)) as connection:
        connection.execute("CREATE TABLE kombu_message (id INTEGER PRIMARY KEY, payload TEXT)")
        connection.execute('INSERT INTO kombu_message (payload) VALUES (\'{"to": "a@b.org"}\')')
    with pytest.raises(SanitizeError, match=r"kombu_message\.payload: an address outside"):
        run_sanitize(app_settings)
    assert rows(app_settings, "SELECT count(*) FROM outbound_emails") == [(2,)]
    assert ("brevet_riders", "email", "ada@example.org") in leftovers(app_settings)


def test_a_database_behind_the_code_is_refused(app_settings, db):
    db.execute(text("UPDATE alembic_version SET version_num = '0001'"))
    db.commit()
    with pytest.raises(SanitizeError, match="migrate it first"):
        run_sanitize(app_settings)


# --- SQLite rewrites set-based: the same as the rules row by row ------------------------------

# A production hostname with a "k" and an "i": Python lower-cases the Kelvin sign (U+212A) to
# "k", so the scrub rewrites "BI\u212aE-PONY.LOCALHOST" where SQLite's ASCII lower() sees nothing.
OTHER_PRODUCTION = "bike-pony.localhost"


def odd_texts(production: str) -> list[str | None]:
    return [
        None,
        "",
        " ",
        "plain words, no address",
        "Zoë Ådahl-Østergård",
        "ride 🚲 with me",
        "nul\x00byte then ada@example.org",
        "nul\x00byte only",
        "ada@example.org",
        "Ada@Example.ORG",
        "tab\tada@example.org\nnext line",
        "a@b@c.example.org",
        "two: a@x.example.org,b@y.example.org; c@z.example.org",
        "x.ab12cd34ef@sink.invalid",
        "X.AB12CD34EF@SINK.INVALID",
        "'quoted'@example.org and a%b@example.org",
        "名前@例え.jp",
        "l" * 80 + "@" + "d" * 70 + ".example.org",
        f"see https://{production}/brevets/LM",
        f"HTTPS://{production.upper()}:8080/X",
        f"https://staging.{production}/ is staging already",
        f"https://{production}.evil.example.com/ is not ours",
        f"mail {production}@example.org",
        "see BI\u212aE-PONY.LOCALHOST/x",
        "İstanbul rider: İ@example.org",
    ]


def odd_addresses() -> list[str]:
    return [
        "Ada@Example.ORG",
        " spaced@example.org ",
        "a@x.example.org; b@y.example.org",
        "",
        "x.ab12cd34ef@sink.invalid",
        "a!b@example.org",
        "名前@例え.jp",
    ]


def add_odd_rows(app_settings, production: str) -> None:
    """Riders, an event, a link and an address holding odd values, written with plain SQL (the
    app's forms would normalise them)."""
    texts, addresses = odd_texts(production), odd_addresses()
    with sqlite3.connect(database_path(app_settings)) as connection:
        [(brevet_id,)] = connection.execute("SELECT min(id) FROM brevets")
        [(populaire_id,)] = connection.execute("SELECT min(id) FROM populaires")
        for i, text_value in enumerate(texts):
            email = addresses[i % len(addresses)] + ("" if i < len(addresses) else f" {i}")
            name = texts[(i + 4) % len(texts)] or "N"
            connection.execute(
                "INSERT INTO brevet_riders (brevet_id, email, first_name, last_name, comment,"
                " registered_at, bike_type, info_answer) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (brevet_id, email, name, f"L{i}", text_value, "2026-01-01 00:00:00", "x", name),
            )
            connection.execute(
                "INSERT INTO populaire_riders (populaire_id, email, first_name, last_name,"
                " comment, registered_at, distance) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (populaire_id, email, "P", f"L{i}", text_value, "2026-01-01 00:00:00", text_value),
            )
        connection.execute(
            "UPDATE brevets SET start_locn = ?, start_map_url = NULL WHERE id = ?",
            (f"Café at {production}", brevet_id),
        )
        connection.execute(
            "INSERT INTO links (key, url) VALUES ('odd', ?)", (f"HTTPS://{production.upper()}/",)
        )
        connection.execute(
            "INSERT INTO email_addresses (key, email) VALUES ('odd', ?)", (addresses[2],)
        )


def copy_database(app_settings, path) -> str:
    with closing(sqlite3.connect(database_path(app_settings))) as source:
        with closing(sqlite3.connect(path)) as copy:
            source.backup(copy)
    return str(path)


def rules_in_python(path: str, options: rules.Options) -> dict[str, int]:
    """The rules as RULES and the module docstring say, applied row by row with plain sqlite3:
    a column's own rewrite, or the scrub for any other text column; NULL stays NULL."""
    counts = {}
    with sqlite3.connect(path) as connection:
        for table in metadata.sorted_tables:
            if table.name in rules.EMPTIED:
                counts[table.name] = connection.execute(f"DELETE FROM {table.name}").rowcount
                continue
            rewrites = {}
            for column in table.columns:
                rule = rules.rule_for(table.name, column.name)
                if rule is not None and rule.rewrite is not None:
                    rewrites[column.name] = rule.rewrite
                elif isinstance(column.type, String):
                    rewrites[column.name] = rules.scrub
            counts[table.name] = 0
            if not rewrites:
                continue
            names = list(rewrites)
            selected = ", ".join(f'"{name}"' for name in names)
            for rowid, *old in connection.execute(f"SELECT rowid, {selected} FROM {table.name}"):
                new = [
                    None if value is None else rewrites[name](value, options)
                    for name, value in zip(names, old, strict=True)
                ]
                if new != old:
                    counts[table.name] += 1
                    assignments = ", ".join(f'"{name}" = ?' for name in names)
                    connection.execute(
                        f"UPDATE {table.name} SET {assignments} WHERE rowid = ?", (*new, rowid)
                    )
    connection.close()
    return counts


def by_rows(path: str, options: rules.Options) -> dict[str, int]:
    """database.py's own row by row path (the one kept for other databases than SQLite)."""
    engine = get_engine({"sqlalchemy.url": f"sqlite:///{path}"})
    try:
        with engine.begin() as connection:
            return {
                table.name: connection.execute(table.delete()).rowcount
                if table.name in rules.EMPTIED
                else database._sanitize_table_by_rows(
                    connection, table, database.rewrites(table), options
                )
                for table in metadata.sorted_tables
            }
    finally:
        engine.dispose()


# Random by design: only checked to have changed.
SECRETS = {("brevets", "uuid"), ("populaires", "uuid"), ("page_generation", "token")}
CHANGED, KEPT = "<a new secret>", "<the old secret>"


def content(path: str, original: str) -> dict[str, list[tuple]]:
    """Every row of every table by rowid, the secrets replaced by CHANGED or KEPT."""
    found = {}
    with sqlite3.connect(path) as connection:
        connection.execute("ATTACH ? AS original", (original,))
        tables = connection.execute("SELECT name FROM main.sqlite_master WHERE type='table'")
        for (table,) in tables.fetchall():
            names = [row[1] for row in connection.execute(f'PRAGMA main.table_info("{table}")')]
            before = dict(
                (row[0], row[1:])
                for row in connection.execute(f"SELECT rowid, * FROM original.{table}")
            )
            found[table] = []
            for rowid, *values in connection.execute(f"SELECT rowid, * FROM main.{table}"):
                for i, name in enumerate(names):
                    if (table, name) in SECRETS:
                        values[i] = CHANGED if values[i] != before[rowid][i] else KEPT
                found[table].append((rowid, *values))
    connection.close()
    return found


@pytest.mark.parametrize("production", [PRODUCTION, OTHER_PRODUCTION])
def test_the_set_based_rewrite_leaves_exactly_what_the_rules_row_by_row_leave(
    app_settings, production_like, tmp_path, monkeypatch, production
):
    monkeypatch.setattr(rules, "_hash", lambda password: f"hash of {password}")
    add_odd_rows(app_settings, production)
    original = copy_database(app_settings, tmp_path / "original.sqlite")
    reference = copy_database(app_settings, tmp_path / "reference.sqlite")
    rows_path = copy_database(app_settings, tmp_path / "by_rows.sqlite")
    options = rules.checked_options(SINK, production, STAGING, STAGING_PASSWORD, SINK_KEY)

    expected_counts = rules_in_python(reference, options)
    counts = run_sanitize(app_settings, production_domain=production)

    assert counts == expected_counts
    assert counts["brevet_riders"] > len(odd_texts(production))  # not vacuous
    expected = content(reference, original)
    assert content(database_path(app_settings), original) == expected
    secrets = [value for table in expected.values() for row in table for value in row]
    assert secrets.count(CHANGED) == 3 and KEPT not in secrets  # 2 events, the page token
    assert by_rows(rows_path, options) == expected_counts
    assert content(rows_path, original) == expected
    # The Kelvin sign takes the scrub's Python path: it is rewritten for the production host
    # whose lower case it holds, and kept for the other one.
    kelvin = rows(app_settings, "SELECT comment FROM brevet_riders WHERE comment LIKE 'see %/x'")
    assert kelvin == [
        ("see staging.randopony.localhost/x",)
        if production == OTHER_PRODUCTION
        else ("see BI\u212aE-PONY.LOCALHOST/x",)
    ]


def test_the_characters_python_takes_for_ascii_are_known():
    """SQLite's lower() only knows ASCII: the SQL that passes over values (may_hold, in
    app/sanitize/sqlite.py) leaves those holding one of these to Python. No other character
    outside ASCII lower-cases to ASCII, or matches ASCII ignoring case, in this Python's Unicode
    tables."""
    others = "".join(chr(i) for i in range(128, sys.maxunicode + 1) if not 0xD800 <= i <= 0xDFFF)
    like_ascii = set(re.findall(r"[\x00-\x7f]", others, re.IGNORECASE))
    like_ascii |= {c for c in others if any(map(str.isascii, c.lower()))}
    assert like_ascii == set(CASE_LIKE_ASCII)


def test_only_a_dot_is_a_dot_and_an_at_sign_an_at_sign_to_python():
    """may_hold (app/sanitize/sqlite.py) looks for "@" and the hostname's "." with instr(), as
    they are: no other character is either of them in lower case or ignoring case."""
    every = "".join(chr(i) for i in range(sys.maxunicode + 1) if not 0xD800 <= i <= 0xDFFF)
    assert set(re.findall(r"[.@]", every, re.IGNORECASE)) == {".", "@"}
    assert {c for c in every if "." in c.lower() or "@" in c.lower()} == {".", "@"}


def every_value_judged(connection) -> list[str]:
    """`leaks_in` on every value of every text column, in Python."""
    found = []
    inspector = inspect(connection)
    raw = connection.connection.driver_connection
    for table in inspector.get_table_names():
        for info in inspector.get_columns(table):
            if isinstance(info["type"], String):
                column = info["name"]
                for (value,) in raw.execute(f'SELECT "{column}" FROM "{table}"'):
                    if value is not None:
                        found += [
                            str(leaks.Leak(table, column, what, str(value)))
                            for what, _ in leaks.leaks_in(str(value), SINK, PRODUCTION)
                        ]
    return found


def test_the_final_scan_finds_what_judging_every_value_in_python_finds(
    app_settings, production_like
):
    """Before sanitising, so there is much to find, with values the scan passes over in SQL (one
    sink address and nothing else) next to ones it must not pass over, and ones that SQLite's
    LIKE would miss (after a NUL; the Kelvin sign, a k to Python's IGNORECASE)."""
    add_odd_rows(app_settings, PRODUCTION)
    near_sinks = [
        "x@sink.invalid",
        "x@sink.invalid@evil.example.org",
        "x@sink.invalid.evil.example.org",
        "x@evil.example.org x@sink.invalid",
        "x@Sink.Invalid",
        "x@sub.sink.invalid",
        f"x@sink.invalid {PRODUCTION}",
        f"{PRODUCTION.upper()}/x@sink.invalid",
        "@sink.invalid",
        "nul\x00a@b.org x@sink.invalid",
        "nul\x00a@b.org",
        "ä@evil.org x@sink.invalid",
        "https://pony.\u212aicks.localhost/",
        "see randopony.localho\u017ft/x",
        "x@sink.invalid\x00 and x@evil.example.org",
    ]
    with sqlite3.connect(database_path(app_settings)) as connection:
        connection.execute("CREATE TABLE kombu_message (id INTEGER PRIMARY KEY, payload TEXT)")
        connection.executemany(
            "INSERT INTO kombu_message (payload) VALUES (?)", [(v,) for v in near_sinks]
        )
    engine = get_engine(app_settings)
    try:
        with engine.begin() as connection:
            # Not SQLite's default: the scan's own SQL must not count on LIKE ignoring case.
            connection.exec_driver_sql("PRAGMA case_sensitive_like = ON")
            judged = {"sink_domain": SINK, "production_domain": PRODUCTION, "limit": 10_000}
            found = leaks.find_leaks(connection, **judged)
            assert sorted(map(str, found)) == sorted(every_value_judged(connection))
            assert len(found) > 60
            payloads = {leak.value for leak in found if leak.table == "kombu_message"}
            assert payloads == {
                "x@sink.invalid.evil.example.org",
                "x@evil.example.org x@sink.invalid",
                f"x@sink.invalid {PRODUCTION}",
                f"{PRODUCTION.upper()}/x@sink.invalid",
                "nul\x00a@b.org x@sink.invalid",
                "nul\x00a@b.org",
                "ä@evil.org x@sink.invalid",
                "see randopony.localho\u017ft/x",
                "x@sink.invalid\x00 and x@evil.example.org",
            }
            assert len(leaks.find_leaks(connection, **{**judged, "limit": 5})) == 5

            # A value that is not text is judged as str() shows it: b'\x00...', b'\t...'
            blobs = {
                "x00.example.org": b"\x00.example.org",
                "t.example.org": b"\t.example.org x@sink.invalid",
            }
            insert = "INSERT INTO kombu_message (payload) VALUES (?)"
            for blob in blobs.values():
                connection.exec_driver_sql(insert, (blob,))
            for domain, blob in blobs.items():
                found = leaks.find_leaks(connection, **{**judged, "production_domain": domain})
                assert [leak.value for leak in found if leak.value.startswith("b'")] == [str(blob)]
            kicks = {**judged, "production_domain": "pony.kicks.localhost"}
            [kelvin] = [
                leak
                for leak in leaks.find_leaks(connection, **kicks)
                if leak.table == "kombu_message" and "pony." in leak.value
            ]
            assert kelvin.what == "the production hostname"
    finally:
        engine.dispose()


def test_a_rule_that_fails_in_sqlite_refuses_everything_with_its_own_error(
    app_settings, production_like, monkeypatch
):
    def broken(value, options):
        if "eddy" in value:
            raise LookupError(f"cannot rewrite {value}")
        return rules.sink_address_list(value, options)

    declared = dict(rules.RULES)
    declared["brevet_riders"] = {**declared["brevet_riders"], "email": rules.Rule("x", "y", broken)}
    monkeypatch.setattr(rules, "RULES", declared)
    tables = ("wranglers", "links", "brevets", "outbound_emails")
    before = [rows(app_settings, f"SELECT * FROM {table}") for table in tables]
    with pytest.raises(LookupError, match="cannot rewrite eddy@example.org"):
        run_sanitize(app_settings)
    assert [rows(app_settings, f"SELECT * FROM {table}") for table in tables] == before
    assert ("brevet_riders", "email", "ada@example.org") in leftovers(app_settings)


# --- The command line -------------------------------------------------------------------------


def write_ini(tmp_path, app_settings, **overrides):
    from tests.integration.conftest import write_ini

    return str(write_ini(tmp_path / "sanitize.ini", {**app_settings, **overrides}))


def sink_key_file(folder) -> str:
    path = folder / "sink-key"
    path.write_bytes(SINK_KEY)
    path.chmod(0o400)
    return str(path)


def test_command_line_refuses_a_sink_key_others_can_read(
    app_settings, production_like, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("RANDOPONY_WRANGLER_PASSWORD", STAGING_PASSWORD)
    key = sink_key_file(tmp_path)
    os.chmod(key, 0o644)
    args = [write_ini(tmp_path, app_settings), "--production-domain", PRODUCTION]
    args += ["--staging-domain", STAGING, "--sink-key-file", key]
    assert cli.main(args) == 2
    assert "readable by others" in capsys.readouterr().err
    assert ("wranglers", "email", WRANGLER_EMAIL) in leftovers(app_settings)


def test_command_line_sanitises_a_staging_database(
    app_settings, production_like, tmp_path, monkeypatch, capsys
):
    ini = write_ini(tmp_path, app_settings, **{"mail.only_to_domains": "sink.test example.org"})
    monkeypatch.setenv("RANDOPONY_WRANGLER_PASSWORD", STAGING_PASSWORD)
    args = [ini, "--production-domain", PRODUCTION, "--staging-domain", STAGING]
    args += ["--sink-key-file", sink_key_file(tmp_path)]
    assert cli.main(args) == 0
    counts = json.loads(capsys.readouterr().out)
    assert counts["outbound_emails"] == 2
    assert rows(app_settings, "SELECT email FROM wranglers ORDER BY id") == [
        (sink_address(WRANGLER_EMAIL, "sink.test", SINK_KEY),),
        (sink_address("second@example.com", "sink.test", SINK_KEY),),
    ]


def test_command_line_refuses_a_production_ini_or_no_password(
    app_settings, production_like, tmp_path, monkeypatch, capsys
):
    args = ["--production-domain", PRODUCTION, "--staging-domain", STAGING]
    args += ["--sink-key-file", sink_key_file(tmp_path)]
    monkeypatch.setenv("RANDOPONY_WRANGLER_PASSWORD", STAGING_PASSWORD)
    production_ini = write_ini(tmp_path, app_settings, production_deployment="true")
    assert cli.main([production_ini, *args]) == 2
    assert "production ini" in capsys.readouterr().err

    monkeypatch.delenv("RANDOPONY_WRANGLER_PASSWORD")
    assert cli.main([write_ini(tmp_path, app_settings), *args]) == 2
    assert "password" in capsys.readouterr().err
    assert ("wranglers", "email", WRANGLER_EMAIL) in leftovers(app_settings)


def test_the_rule_table_lists_every_column_once():
    described = {name: (action, reason) for name, action, reason in rules.describe_rules()}
    assert len(described) == sum(len(table.columns) for table in metadata.sorted_tables)
    assert described["wranglers.password_hash"][0] == "staging password"
    assert described["outbound_emails.body"][0] == "emptied"
    assert described["brevets.start_locn"][0] == "scrub"  # no rule: the safety net
    assert all(reason for _action, reason in described.values())
