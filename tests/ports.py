"""Ports for the hosts the tests start. `make test` runs test modules side by side
(pytest-xdist), and a host's panel hands out app ports from a range by probing which are free:
two hosts probing the same range at the same moment could hand out the same port. So each
worker takes app ports from a band of its own."""

from __future__ import annotations

import os
import random

FIRST = 21000  # app ports stay below the kernel's ephemeral range (32768 up)
BANDS = 4  # workers beyond this share bands again, still far apart at random


def worker_index() -> int:
    """gw0, gw1, ... under pytest-xdist; 0 when run alone."""
    name = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    return int(name.removeprefix("gw") or 0)


def app_ports(count: int = 100) -> str:
    """FIRST-LAST for a host's --app-ports: `count` ports in this worker's band, at a random
    place in it so that hosts started one after another by one worker do not reuse ports a
    stopped release may still hold."""
    width = (32000 - FIRST) // BANDS  # 2,750 ports a worker
    band = FIRST + (worker_index() % BANDS) * width
    first = random.randrange(band, band + width - count, count)
    return f"{first}-{first + count - 1}"
