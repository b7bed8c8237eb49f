"""Fixtures for the admin tests: a logged-in wrangler and a way to POST with the page's token."""

import re

import pytest

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
def admin(testapp, login):
    """The test app with the first wrangler logged in."""
    response = login()
    assert response.status_int == 302, response
    return testapp


@pytest.fixture
def csrf_token(testapp):
    """The session's CSRF token, as a page of the site hands it out."""

    def token(path="/admin/"):
        return CSRF.search(testapp.get(path).text).group(1)

    return token


@pytest.fixture
def fresh(db):
    """The test's session, made to see what requests committed since it last read."""

    def reread():
        # expire_all alone is not enough: an open read transaction keeps its SQLite snapshot.
        db.rollback()
        db.expire_all()
        return db

    return reread
