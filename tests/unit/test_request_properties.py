"""Request properties live on one request class built at start, and each request still keeps
its own values."""

import itertools

import webtest
from pyramid.config import Configurator
from pyramid.response import Response


def app_with_a_numbered_request():
    numbers = itertools.count()
    classes = []

    def view(request):
        classes.append(type(request))
        return Response(f"{request.number} {request.number} {request.shout('hi')}")

    config = Configurator()
    config.add_request_method(lambda request: next(numbers), "number", reify=True)
    config.add_request_method(lambda request, word: word.upper(), "shout")
    config.include("app.request_properties")
    config.add_route("page", "/")
    config.add_view(view, route_name="page")
    return webtest.TestApp(config.make_wsgi_app()), classes


def test_each_request_reifies_its_own_values():
    app, _ = app_with_a_numbered_request()
    assert app.get("/").text == "0 0 HI"
    assert app.get("/").text == "1 1 HI"


def test_no_request_class_is_built_per_request():
    app, classes = app_with_a_numbered_request()
    app.get("/")
    app.get("/")
    assert len(classes) == 2 and classes[0] is classes[1]
    assert "number" in vars(classes[0])
