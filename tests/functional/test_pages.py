"""The public pages, the health check and the error pages, as a browser sees them."""

from datetime import timedelta

import pytest
from sqlalchemy import text

from tests.factories import in_days, make_brevet, make_brevet_rider, make_populaire


@pytest.mark.parametrize(
    "path", ["/", "/organizer-info/", "/about-pony/", "/brevets/", "/populaires/"]
)
def test_static_pages_answer(testapp, path):
    page = testapp.get(path)
    assert page.status_int == 200
    assert "RandoPony" in page.text
    assert 'name="viewport"' in page.text


def test_home_lists_current_events_not_old_ones(testapp, db):
    make_brevet(db, route_name="Current Route")
    make_brevet(db, region="VI", route_name="Ancient Route", date_time=in_days(-30))
    make_populaire(db, event_name="Coming Populaire")
    db.commit()
    page = testapp.get("/")
    assert "Current Route" in page.text
    assert "Coming Populaire" in page.text
    assert "Ancient Route" not in page.text


def test_region_page_lists_only_that_region(testapp, db):
    make_brevet(db, region="LM", route_name="Mainland Loop")
    make_brevet(db, region="VI", route_name="Island Loop")
    db.commit()
    page = testapp.get("/brevets/VI/")
    assert "Island Loop" in page.text
    assert "Mainland Loop" not in page.text


def test_unknown_region_is_404(testapp):
    page = testapp.get("/brevets/ZZ/", status=404)
    assert "no region" in page.text


def test_brevet_page_shows_details_map_and_riders(testapp, db):
    brevet = make_brevet(
        db, start_locn="Jericho Beach", alt_date_time=in_days(10) + timedelta(hours=1)
    )
    make_brevet_rider(
        db, brevet, first_name="Susan", last_name="Notorangelo", comment="Tandem stoker"
    )
    db.commit()
    page = testapp.get(f"/brevets/LM/200/{brevet.url_date}")
    assert "Jericho Beach" in page.text
    assert "openstreetmap.org/search?query=Jericho+Beach" in page.text
    assert "Susan Notorangelo" in page.text
    assert "Alternative start" in page.text
    assert "Pre-register for this brevet" in page.text
    assert "organizer@example.com" in page.text


@pytest.mark.parametrize(
    "path",
    [
        "/brevets/XX/200/03Mar2013",  # unknown region
        "/brevets/LM/250/03Mar2013",  # unknown distance
        "/brevets/LM/abc/03Mar2013",  # distance not a number
        "/brevets/LM/200/31Feb2013",  # no such date
        "/brevets/LM/200/2013-03-03",  # malformed date
        "/brevets/LM/200/03Mar2013",  # past, never in the database
        "/brevets/LM/200/03Mar2013/entry",
        "/brevets/LM/200/03Mar2013/rider_emails/abc",
        "/populaires/NoSuchPop",
        "/populaires/NoSuchPop/entry",
        "/no/such/page",
    ],
)
def test_bad_event_addresses_are_404_never_500(testapp, path):
    page = testapp.get(path, status=404)
    assert "could not find" in page.text


def test_future_brevet_not_yet_set_up_is_coming_soon(testapp):
    day = in_days(60)
    page = testapp.get(f"/brevets/SI/600/{day:%d%b%Y}")
    assert "coming soon" in page.text
    assert "Southern Interior" in page.text


def test_brevet_more_than_a_week_past_has_moved_on(testapp, db):
    brevet = make_brevet(db, date_time=in_days(-8))
    db.commit()
    page = testapp.get(f"/brevets/LM/200/{brevet.url_date}")
    assert "has moved on" in page.text
    assert "results" in page.text
    assert "Pre-register" not in page.text


def test_brevet_a_few_days_past_still_shows_its_riders(testapp, db):
    brevet = make_brevet(db, date_time=in_days(-3))
    make_brevet_rider(db, brevet, first_name="Lon", last_name="Haldeman")
    db.commit()
    page = testapp.get(f"/brevets/LM/200/{brevet.url_date}")
    assert "Lon Haldeman" in page.text
    assert "closed" in page.text


def test_populaire_page(testapp, db):
    make_populaire(db, event_name="Spring Populaire", distance="50 km, 100 km")
    db.commit()
    page = testapp.get("/populaires/SprPop")
    assert "Spring Populaire" in page.text
    assert "50 km, 100 km" in page.text


def test_trailing_slash_variants_redirect(testapp, db):
    brevet = make_brevet(db)
    db.commit()
    assert testapp.get("/brevets").location.endswith("/brevets/")
    assert testapp.get(f"/brevets/LM/200/{brevet.url_date}/").location.endswith(brevet.url_date)


def test_up_reports_the_database_revision(testapp):
    answer = testapp.get("/up")
    assert answer.json["status"] == "ok"
    assert answer.json["revision"] == answer.json["code_head"]
    assert answer.headers["Cache-Control"].startswith("max-age=0")


@pytest.mark.own_database  # /up reads the revision with a connection of its own
def test_up_is_503_when_the_database_is_behind_the_code(testapp, db):
    db.execute(text("UPDATE alembic_version SET version_num = 'older'"))
    db.commit()
    answer = testapp.get("/up", status=503)
    assert answer.json["status"] == "migration needed"
    assert answer.json["revision"] == "older"


def test_up_is_503_when_the_database_does_not_answer(app_settings, tmp_path):
    import webtest

    from app import main

    app_settings["sqlalchemy.url"] = f"sqlite:///{tmp_path}/missing-dir/nothing.sqlite"
    answer = webtest.TestApp(main({}, **app_settings)).get("/up", status=503)
    assert answer.json["database"] == "unreachable"


def test_static_files_are_served(testapp):
    assert "font" in testapp.get("/static/site.css").text
