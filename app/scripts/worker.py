"""randopony_worker <ini> [celery worker options]: the celery worker, configured from the ini."""

import faulthandler
import sys

from pyramid.paster import get_appsettings, setup_logging

from .. import settings as app_settings
from ..worker import celery, configure, stop_promptly


def main(argv=None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0].startswith("-"):
        sys.exit("usage: randopony_worker <ini> [celery worker options]")
    ini, options = argv[0], argv[1:]
    faulthandler.enable()  # a crash in a compiled module leaves its stack in the log
    setup_logging(ini)
    settings = app_settings.load(get_appsettings(ini))
    configure(settings)
    if app_settings.as_bool(settings.get("celery.stop_promptly", True)):
        stop_promptly()
    import app.tasks  # noqa: F401  (registers the tasks and the worker_ready hook)

    # Threads, not celery's default prefork pool: the tasks wait on SMTP and small files, and
    # billiard's pool can hang joining its supervisor thread at shutdown (seen here: a worker
    # that never exited on SIGTERM until supervisord killed it).
    pool = settings.get("celery.pool", "threads")
    argv = ["worker", "--loglevel=INFO", "--without-gossip", "--without-mingle", f"--pool={pool}"]
    celery.worker_main([*argv, *options])


if __name__ == "__main__":
    main()
