"""Where the host keeps things under its root (see DESIGN.md, "The host layout")."""

from __future__ import annotations

from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[2]

# Where the local host's panel and router listen unless told otherwise.
DEFAULT_PANEL = ("127.0.0.1", 8090)
DEFAULT_ROUTER = ("127.0.0.1", 8080)


def default_root() -> Path:
    """The embedded host for local use lives in the checkout."""
    return CHECKOUT / "var" / "host"


def webapps(root: Path) -> Path:
    return root / "webapps"


def panel_db(root: Path) -> Path:
    return root / "panel" / "panel.sqlite"


def frontend_logs(root: Path) -> Path:
    return root / "logs" / "frontend"


def host_logs(root: Path) -> Path:
    return root / "logs" / "host"


def supervisor_dir(root: Path) -> Path:
    return root / "supervisor"
