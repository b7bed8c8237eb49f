"""Sanitising a copy of production's database for staging: every address goes to the sink, links
to production go to staging, secrets are reset, the outbox is emptied; and a model column that may
hold personal data cannot be added without a rule."""

import json
import re
import sqlite3
from datetime import datetime

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, Text, select, text

from app import sanitize
from app.mail import unsent_email_ids
from app.models import (
    Link,
    OutboundEmail,
    Wrangler,
    get_engine,
    get_session_factory,
    metadata,
)
from app.sanitize import SanitizeError, sink_address
from tests.conftest import WRANGLER_EMAIL, WRANGLER_PASSWORD
from tests.factories import make_brevet, make_brevet_rider, make_populaire, make_populaire_rider

PRODUCTION = "randopony.localhost"
STAGING = "staging.randopony.localhost"
SINK = "sink.invalid"
STAGING_PASSWORD = "staging wrangler pw"

# The checks below are written independently of app/sanitize.py's own patterns.
EMAIL_LIKE = re.compile(r"[^\s@,;:<>()\"'/]+@([A-Za-z0-9.-]+[A-Za-z0-9])")
PRODUCTION_HOST = re.compile(r"(?<![\w.-])randopony\.localhost(?![\w-])", re.IGNORECASE)


# --- Rule coverage ----------------------------------------------------------------------------


def test_every_personal_looking_column_of_the_models_has_a_rule():
    assert sanitize.uncovered_columns(metadata) == [], (
        "declare these columns in app/sanitize.py RULES (a rule, or kept/not_personal and why)"
    )
    assert sanitize.stale_rules(metadata) == []


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
    assert sanitize.uncovered_columns(copy) == [
        "brevet_riders.emergency_contact_email",
        "club_members.notes_for_the_club",
        "club_members.phone",
    ]

    # Declaring them covers them: a rule, or saying it is not personal.
    rules = dict(sanitize.RULES)
    rules["brevet_riders"] = {
        **rules["brevet_riders"],
        "emergency_contact_email": sanitize.to_sink("a contact's address"),
    }
    rules["club_members"] = {
        "phone": sanitize.kept("for the test"),
        "notes_for_the_club": sanitize.not_personal("for the test"),
    }
    monkeypatch.setattr(sanitize, "RULES", rules)
    assert sanitize.uncovered_columns(copy) == []
    assert sanitize.stale_rules(copy) == []
    assert "club_members.phone" in sanitize.stale_rules(metadata)


# --- Addresses ----------------------------------------------------------------------------------


def test_sink_addresses_are_deterministic_distinct_and_stable():
    ada = sink_address("ada@example.org", SINK)
    assert ada.endswith("@" + SINK) and ada.startswith("ada.example.org.")
    assert sink_address(" Ada@Example.ORG ", SINK) == ada  # riders' addresses are compared lower
    assert sink_address(ada, SINK) == ada  # sanitising twice changes nothing
    assert sink_address("a.b@c.org", SINK) != sink_address("a@b.c.org", SINK)
    long_one = sink_address("x" * 60 + "@" + "y" * 60 + ".example.org", SINK)
    assert len(long_one.split("@")[0]) <= 64


def test_a_sink_domain_that_could_reach_someone_is_refused(app_settings):
    engine = get_engine(app_settings)
    with engine.begin() as connection, pytest.raises(ValueError, match="not reserved"):
        sanitize.sanitize(connection, **options(sink_domain="gmail.com"))
    engine.dispose()


# --- Sanitising a database --------------------------------------------------------------------


def options(**overrides):
    return {
        "sink_domain": SINK,
        "production_domain": PRODUCTION,
        "staging_domain": STAGING,
        "wrangler_password": STAGING_PASSWORD,
        **overrides,
    }


@pytest.fixture
def production_like(db):
    """The test database filled as production's could be: riders on two events, organizers'
    lists, a second wrangler, links to production, addresses in free text, unsent mail."""
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
            return sanitize.sanitize(connection, **options(**overrides))
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
    assert all(new == sink_address(old, SINK) for old, new in mapping.items())
    [(brevet_org,), (populaire_org,)] = rows(
        app_settings,
        "SELECT organizer_email FROM brevets UNION ALL SELECT organizer_email FROM populaires",
    )
    org1, org2 = brevet_org.split(", ")
    assert org1 == populaire_org == sink_address("org1@example.com", SINK)
    assert org2 == sink_address("org2@example.com", SINK)
    assert rows(app_settings, "SELECT key, email FROM email_addresses ORDER BY key") == [
        ("admin_email", sink_address("pony-admin@example.com", SINK)),
        ("club_webmaster", sink_address("webmaster@example.com", SINK)),
        ("from_randopony", sink_address("randopony@example.com", SINK)),
    ]
    # Names, comments' words and the rest of a rider stay.
    assert rows(app_settings, "SELECT comment FROM brevet_riders WHERE comment IS NOT NULL") == [
        (f"or text me at {sink_address('eddy.m@mail.example.com', SINK)}",)
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
            f"{sink_address('bags@club.example.net', SINK)}",
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
            sink_address(WRANGLER_EMAIL, SINK),
            sink_address("second@example.com", SINK),
        ]
        assert all(w.check_password(STAGING_PASSWORD) for w in wranglers)
        assert not wranglers[0].check_password(WRANGLER_PASSWORD)
        assert not wranglers[1].check_password("second's production password")

    assert login(WRANGLER_EMAIL, WRANGLER_PASSWORD).status_int == 200  # the form again
    assert login(sink_address(WRANGLER_EMAIL, SINK), WRANGLER_PASSWORD).status_int == 200
    assert login(sink_address(WRANGLER_EMAIL, SINK), STAGING_PASSWORD).status_int == 302


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


# --- The command line -------------------------------------------------------------------------


def write_ini(tmp_path, app_settings, **overrides):
    from tests.integration.conftest import write_ini

    return str(write_ini(tmp_path / "sanitize.ini", {**app_settings, **overrides}))


def test_command_line_sanitises_a_staging_database(
    app_settings, production_like, tmp_path, monkeypatch, capsys
):
    ini = write_ini(tmp_path, app_settings, **{"mail.only_to_domains": "sink.test example.org"})
    monkeypatch.setenv("RANDOPONY_WRANGLER_PASSWORD", STAGING_PASSWORD)
    args = [ini, "--production-domain", PRODUCTION, "--staging-domain", STAGING]
    assert sanitize.main(args) == 0
    counts = json.loads(capsys.readouterr().out)
    assert counts["outbound_emails"] == 2
    assert rows(app_settings, "SELECT email FROM wranglers ORDER BY id") == [
        (sink_address(WRANGLER_EMAIL, "sink.test"),),
        (sink_address("second@example.com", "sink.test"),),
    ]


def test_command_line_refuses_a_production_ini_or_no_password(
    app_settings, production_like, tmp_path, monkeypatch, capsys
):
    args = ["--production-domain", PRODUCTION, "--staging-domain", STAGING]
    monkeypatch.setenv("RANDOPONY_WRANGLER_PASSWORD", STAGING_PASSWORD)
    production_ini = write_ini(tmp_path, app_settings, production_deployment="true")
    assert sanitize.main([production_ini, *args]) == 2
    assert "production ini" in capsys.readouterr().err

    monkeypatch.delenv("RANDOPONY_WRANGLER_PASSWORD")
    assert sanitize.main([write_ini(tmp_path, app_settings), *args]) == 2
    assert "password" in capsys.readouterr().err
    assert ("wranglers", "email", WRANGLER_EMAIL) in leftovers(app_settings)


def test_the_rule_table_lists_every_column_once():
    described = {name: (action, reason) for name, action, reason in sanitize.describe_rules()}
    assert len(described) == sum(len(table.columns) for table in metadata.sorted_tables)
    assert described["wranglers.password_hash"][0] == "staging password"
    assert described["outbound_emails.body"][0] == "emptied"
    assert described["brevets.start_locn"][0] == "scrub"  # no rule: the safety net
    assert all(reason for _action, reason in described.values())
