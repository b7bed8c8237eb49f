"""randopony_worker <ini> [celery worker options]: the celery worker, configured from the ini."""

import sys

from pyramid.paster import get_appsettings, setup_logging

from .. import settings as app_settings
from ..worker import celery, configure


def main(argv=None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0].startswith("-"):
        sys.exit("usage: randopony_worker <ini> [celery worker options]")
    ini, options = argv[0], argv[1:]
    setup_logging(ini)
    settings = app_settings.load(get_appsettings(ini))
    configure(settings)
    import app.tasks  # noqa: F401  (registers the tasks and the worker_ready hook)

    celery.worker_main(
        ["worker", "--loglevel=INFO", "--without-gossip", "--without-mingle", *options]
    )


if __name__ == "__main__":
    main()
