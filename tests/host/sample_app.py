"""A tiny WSGI app for the host's tests, run on waitress in its own process.

    python tests/host/sample_app.py NAME PORT

It counts the POSTs it receives by their `id`, so a test can check each was answered once. A
request with `gate=PATH` stays at the app until that file exists (and, with an `id`, is counted
as it leaves), so a test can hold a request under way for as long as it needs (`gate_app=NAME`:
only in the app of that name). An app whose name starts with "replay-" tells the router, as
RandoPony does, that a write sent to it twice is done once.
"""

import hashlib
import json
import logging
import os
import sys
import threading
import time
from urllib.parse import parse_qs

import waitress

posts: dict[str, int] = {}
lock = threading.Lock()


def make_app(name: str):
    def app(environ, start_response):
        path = environ["PATH_INFO"]
        query = parse_qs(environ.get("QUERY_STRING", ""))
        method = environ["REQUEST_METHOD"]
        if path == "/big":
            size = int(query["bytes"][0])
            start_response(
                "200 OK",
                [
                    ("Content-Type", "application/octet-stream"),
                    ("Content-Length", str(size)),
                    ("X-App", name),
                ],
            )
            if query.get("stall", [""])[0] == name:
                return _stalled(name, size)
            return _pattern(size)
        if method == "POST" and path == "/digest":
            digest, length = hashlib.sha256(), 0
            stream = environ["wsgi.input"]
            while chunk := stream.read(1 << 20):
                digest.update(chunk)
                length += len(chunk)
            return _json(start_response, {"sha256": digest.hexdigest(), "length": length})
        if "gate" in query and query.get("gate_app", [name])[0] == name:
            # A request that stays at the app until the test creates the gate file.
            request_id = environ.get("HTTP_X_RANDOPONY_REQUEST")
            print(f"at gate {query['gate'][0]} (request {request_id})", flush=True)
            while not os.path.exists(query["gate"][0]):
                time.sleep(0.01)
        if method == "POST":
            post_id = query.get("id", ["?"])[0]
            environ["wsgi.input"].read()
            if "seconds" in query:  # a slow write, for the in-flight tests
                time.sleep(float(query["seconds"][0]))
            with lock:
                posts[post_id] = posts.get(post_id, 0) + 1
            return _json(
                start_response,
                {"app": name, "id": post_id, "request": environ.get("HTTP_X_RANDOPONY_REQUEST")},
            )
        if "gate" in query and "id" in query:
            with lock:
                posts[query["id"][0]] = posts.get(query["id"][0], 0) + 1
        if path == "/posts":
            with lock:
                return _json(start_response, dict(posts))
        if path == "/slow" and query.get("only", [name])[0] == name:
            print(f"slow read for {name}", flush=True)
            time.sleep(float(query["seconds"][0]))
        headers = {
            key[5:].replace("_", "-").lower(): value
            for key, value in environ.items()
            if key.startswith("HTTP_")
        }
        return _json(
            start_response,
            {
                "app": name,
                "path": path,
                "query": environ.get("QUERY_STRING", ""),
                "headers": headers,
                "remote_port": environ.get("REMOTE_PORT"),
            },
        )

    return app


def _stalled(name: str, size: int):
    """The first MiB, then nothing more: an app that dies half-way through an answer."""
    yield bytes(range(256)) * 4096
    print(f"stalled mid-answer: {name}", flush=True)
    while True:
        time.sleep(1)
    yield from _pattern(size - (1 << 20))


def _pattern(size: int):
    block = bytes(range(256)) * 4096  # 1 MiB
    sent = 0
    while sent < size:
        piece = block[: size - sent]
        sent += len(piece)
        yield piece


def _json(start_response, data) -> list[bytes]:
    body = json.dumps(data).encode()
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    if data.get("app", "").startswith("replay-"):
        # An app that says it does a write sent twice once (as RandoPony's does).
        headers.append(("X-Randopony-Replay", "ids"))
    start_response("200 OK", headers)
    return [body]


if __name__ == "__main__":
    app_name, port = sys.argv[1], int(sys.argv[2])
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    # Keep the X-Forwarded-* headers so the tests can see what the router sent.
    waitress.serve(
        make_app(app_name),
        host="127.0.0.1",
        port=port,
        threads=8,
        clear_untrusted_proxy_headers=False,
        _quiet=True,
    )
