"""A rider opens an event in a browser, pre-registers, and sees the confirmation and their name."""

from sqlalchemy import select

from app.models import BrevetRider
from tests.factories import make_brevet, make_brevet_rider


def test_rider_pre_registers_in_a_browser(live_site, page, db, tmp_path):
    brevet = make_brevet(db, route_name="Seaside Slog")
    make_brevet_rider(db, brevet, first_name="Eddy", last_name="Merckx")
    db.commit()

    page.goto(f"{live_site}/brevets/")
    page.get_by_role("link", name=brevet.title).click()
    assert page.get_by_role("heading", level=1).inner_text() == brevet.title
    page.get_by_role("link", name="Pre-register for this brevet").click()

    page.get_by_label("Email address").fill("zoe@example.org")
    page.get_by_label("First name").fill("Zoë")
    page.get_by_label("Last name").fill("Ørsted")
    page.get_by_label("Bike type").select_option("velomobile")
    page.get_by_role("button", name="Pre-register").click()

    status = page.get_by_role("status")
    assert "Thank you, Zoë! You are pre-registered" in status.inner_text()
    riders = page.locator("ul.riders li").all_inner_texts()
    assert any("Zoë Ørsted" in rider for rider in riders)
    assert any("Eddy Merckx" in rider for rider in riders)
    page.screenshot(path=str(tmp_path / "after-sign-up.png"), full_page=True)

    db.expire_all()
    stored = db.scalar(select(BrevetRider).where(BrevetRider.email == "zoe@example.org"))
    assert stored.bike_type == "velomobile"


def test_browser_shows_field_errors_next_to_the_fields(live_site, page, db):
    brevet = make_brevet(db)
    db.commit()
    page.goto(f"{live_site}/brevets/LM/200/{brevet.url_date}/entry")
    page.get_by_label("Email address").fill("not-an-email")
    page.get_by_label("First name").fill("Ada")
    page.get_by_label("Last name").fill("Lovelace")
    page.get_by_label("Bike type").select_option("single")
    page.get_by_role("button", name="Pre-register").click()
    assert "That is not a valid email address" in page.locator("#email-error").inner_text()
    assert page.get_by_label("Email address").get_attribute("aria-invalid") == "true"
    assert page.get_by_label("First name").input_value() == "Ada"  # what was typed is kept
