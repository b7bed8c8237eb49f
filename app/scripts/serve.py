"""randopony_serve <ini> --port P: the site on waitress, with the ini's [server:main] settings
but the port the hosting panel assigned to this release's app."""

import argparse

import plaster
from pyramid.paster import get_app, setup_logging
from waitress import serve


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="randopony_serve", description=__doc__)
    parser.add_argument("config_uri")
    parser.add_argument("--port", type=int, help="overrides [server:main] port")
    args = parser.parse_args(argv)
    setup_logging(args.config_uri)
    server = dict(
        plaster.get_loader(args.config_uri, protocols=["wsgi"]).get_settings("server:main")
    )
    server.pop("use", None)
    if args.port:
        server["port"] = str(args.port)
    server.setdefault("host", "127.0.0.1")
    serve(get_app(args.config_uri, "main"), **server)


if __name__ == "__main__":
    main()
