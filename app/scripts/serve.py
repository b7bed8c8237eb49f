"""randopony_serve <ini> [--port P | --fd N]: the site on waitress, with the ini's [server:main]
settings but the port the hosting panel assigned to this release's app.

Under a release's supervisord the app runs as several processes that share one listening
socket, bound by supervisord and handed to each as a file descriptor (`--fd 0`): when one process
dies, the others go on accepting from the same queue, so a crash fails only the requests that
process was answering.
"""

import argparse
import faulthandler
import socket

import plaster
from pyramid.paster import get_app, setup_logging
from waitress import serve


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="randopony_serve", description=__doc__)
    parser.add_argument("config_uri")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--port", type=int, help="overrides [server:main] port")
    where.add_argument("--fd", type=int, help="serve on this inherited listening socket")
    args = parser.parse_args(argv)
    # A crash in a compiled module leaves its Python stack in the log.
    faulthandler.enable()
    setup_logging(args.config_uri)
    server = dict(
        plaster.get_loader(args.config_uri, protocols=["wsgi"]).get_settings("server:main")
    )
    server.pop("use", None)
    if args.fd is not None:
        server.pop("host", None)
        server.pop("port", None)
        server.pop("listen", None)
        server["sockets"] = [socket.socket(fileno=args.fd)]
    else:
        if args.port:
            server["port"] = str(args.port)
        server.setdefault("host", "127.0.0.1")
    serve(get_app(args.config_uri, "main"), **server)


if __name__ == "__main__":
    main()
