"""Maintainer tasks: `fab --list`. Each task is a thin layer over deploy/.
Task names keep their underscores (see fabric.yaml).

fab host_up [--root DIR] [--panel-port 8090] [--router-port 8080]
fab host_status [--root DIR]
fab host_down [--root DIR]
"""

from fabric import task
from invoke import Exit

from deploy import host_service


@task
def host_up(c, root=None, panel_port=8090, router_port=8080):
    """Start the local host (hosting panel and router) under its supervisord."""
    try:
        status = host_service.host_up(root, int(panel_port), int(router_port))
    except host_service.HostServiceError as error:
        raise Exit(str(error), code=1) from None
    host_service.print_status(status)


@task
def host_down(c, root=None):
    """Stop the local host and its supervisord."""
    host_service.print_status(host_service.host_down(root))


@task
def host_status(c, root=None):
    """Show whether the local host's panel and router run and answer."""
    status = host_service.host_status(root)
    host_service.print_status(status)
    if not status.running:
        raise Exit(code=3)
