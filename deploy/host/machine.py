"""The one machine a host is, as the panel describes it to clients (`list_machines`, `list_ips`,
and the `web_server` and `mail_server` of `login`'s account), in the terms Webfaction used: a
name, an operating system, a location."""

from __future__ import annotations

import platform
import socket
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Machine:
    name: str
    operating_system: str
    location: str

    def as_wire(self) -> dict:
        return {
            "id": 1,
            "name": self.name,
            "operating_system": self.operating_system,
            "location": self.location,
        }


def this_machine() -> Machine:
    return Machine(socket.gethostname(), _operating_system(), _location())


def _operating_system() -> str:
    # Webfaction answered names like "Centos7-64bit"; os-release says the same thing here.
    try:
        release = platform.freedesktop_os_release()
        name = release.get("NAME", platform.system()) + " " + release.get("VERSION_ID", "")
    except OSError:
        name = f"{platform.system()} {platform.release()}"
    bits = "64bit" if platform.architecture()[0] == "64bit" else "32bit"
    return f"{name.strip()}-{bits}"


def _location() -> str:
    """Where the machine says it is: its time zone ("America/Vancouver"). Webfaction answered
    the region of its data centre ("USA"); a host knows no more than its own settings."""
    try:
        zone = Path("/etc/timezone").read_text().strip()
    except OSError:
        zone = ""
    if not zone:
        try:
            zone = str(Path("/etc/localtime").resolve()).partition("zoneinfo/")[2]
        except OSError:
            zone = ""
    return zone or "unknown"
