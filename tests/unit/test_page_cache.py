"""The page cache keeps only what is the same for every visitor: on a tiny Pyramid app of its
own, with a real token table in SQLite and real signed-cookie sessions."""

import sqlite3

import pytest
import webtest
from pyramid.config import Configurator
from pyramid.response import Response
from pyramid.session import SignedCookieSessionFactory
from sqlalchemy import create_engine

from app.visitor_parts import Holes


@pytest.fixture
def site(tmp_path):
    database = tmp_path / "site.sqlite"
    with sqlite3.connect(database) as connection:
        connection.execute("CREATE TABLE page_generation (id INTEGER PRIMARY KEY, token TEXT)")
        connection.execute("INSERT INTO page_generation VALUES (1, 'first')")

    def set_name(request):
        request.session["name"] = request.params["name"]
        return Response("ok")

    def hello(request):
        # A careless view: it shows the session's content outside any visitor part.
        name = request.session.get("name", "stranger")
        flash = request.visitor_part("flash")
        return Response(f"<p>{flash}Hello, {name}!</p>", content_type="text/html")

    def plain(request):
        return Response(f"<p>{request.visitor_part('flash')}Hello!</p>", content_type="text/html")

    config = Configurator(session_factory=SignedCookieSessionFactory("secret"))
    config.registry["db_engine"] = create_engine(f"sqlite:///{database}")
    config.include("app.visitor_parts")
    config.include("app.page_cache")
    for name, view in (("set", set_name), ("hello", hello), ("plain", plain)):
        config.add_route(name, f"/{name}")
        config.add_view(view, route_name=name)
    app = config.make_wsgi_app()
    yield app
    config.registry["db_engine"].dispose()


def test_a_page_that_reads_the_session_outside_its_parts_is_never_shown_to_another(site):
    alice = webtest.TestApp(site)
    alice.get("/set", {"name": "Alice"})
    assert "Hello, Alice!" in alice.get("/hello").text
    assert "Hello, stranger!" in webtest.TestApp(site).get("/hello").text
    bob = webtest.TestApp(site)
    bob.get("/set", {"name": "Bob"})
    assert "Hello, Bob!" in bob.get("/hello").text
    assert "Hello, Alice!" in alice.get("/hello").text


def test_a_page_that_keeps_to_its_parts_gets_each_visitors_own(site):
    alice = webtest.TestApp(site)
    alice.get("/set", {"name": "Alice"})
    for visitor in (alice, webtest.TestApp(site), alice):
        page = visitor.get("/plain").text
        assert page == "<p>Hello!</p>" and "visitor-part" not in page


def test_a_hole_marked_with_another_processs_secret_is_only_text():
    mine, theirs = Holes(), Holes()
    body = f"a{mine.mark('flash')}b{theirs.mark('csrf_token')}c".encode()
    pieces = mine.split(body)
    assert pieces[1] == "flash" and len(pieces) == 3
    assert pieces[2] == f"b{theirs.mark('csrf_token')}c".encode()


def test_only_the_visitor_parts_there_are_can_be_asked_for():
    with pytest.raises(KeyError):
        Holes().mark("password")
