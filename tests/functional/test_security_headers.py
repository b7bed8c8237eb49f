"""Every answer carries the security headers: pages, forms, errors, files, cached pages."""

import pytest

from app.security_headers import HEADERS
from tests.factories import make_brevet


@pytest.fixture
def brevet_url(db):
    brevet = make_brevet(db)
    db.commit()
    return f"/brevets/LM/200/{brevet.url_date}"


def test_every_kind_of_answer_has_the_headers(testapp, brevet_url, login):
    answers = [
        testapp.get("/"),
        testapp.get("/"),  # the second time from the page cache
        testapp.get(brevet_url),
        testapp.get(brevet_url + "/entry"),
        testapp.get("/no/such/page", status=404),
        testapp.get("/static/site.css"),
        testapp.get("/admin/login"),
        login(),
        testapp.get("/admin/"),
    ]
    for answer in answers:
        for name, value in HEADERS.items():
            assert answer.headers.get(name) == value, (answer.request.path, name)
    policy = HEADERS["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in policy and "'unsafe-inline'" not in policy


def test_no_page_needs_an_inline_script_or_style(testapp, brevet_url, login):
    login()
    for path in ("/", brevet_url, brevet_url + "/entry", "/admin/", "/admin/brevets"):
        page = testapp.get(path).text
        assert "<script>" not in page and " style=" not in page and "<style" not in page, path
        assert " onclick=" not in page and " onsubmit=" not in page, path
