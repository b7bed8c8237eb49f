"""What the hosting panel (deploy/host/panel.py) and its client (deploy/remote/panel_client.py)
both speak: XML-RPC, Webfaction style (`login` first, then the session id first in every
call), with these fault codes, and three extensions of this project's panel:

- ``hold_writes(session, website)``: the router holds POST, PUT, PATCH and DELETE requests for the
  website's domains (reads go on) until ``release_writes(session, website)``, or until the hold
  lapses by itself. A held request then goes to wherever its domain points at that moment.
- ``app_answers(session, app)``: whether something accepts connections on the app's port.
- ``wait_app_idle(session, app, timeout)``: answers once no request routed to the app is under
  way (returns how many still are), so an old release can be stopped without cutting one off.

``hold_writes`` answers only once the writes already under way have finished.
"""

from __future__ import annotations

import enum


class FaultCode(enum.IntEnum):
    """The Fault codes the panel sends; other endpoints may send others."""

    INVALID = 1
    NOT_FOUND = 2
    CONFLICT = 3
    IN_USE = 4
    LOGIN_FAILED = 5
    SESSION = 6
    RATE_LIMITED = 7
    UNKNOWN_METHOD = 8
    INTERNAL = 9
