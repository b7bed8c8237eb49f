"""Is a rider a current club member? Asked of the club's membership service over HTTP.

The standard library's client, not requests: requests brings charset-normalizer, whose compiled
build (3.5.2) corrupted the heap of a loaded app process (see bench/crash_repro/). One GET with
a JSON answer needs none of it.
"""

import json
import logging
import urllib.request
from urllib.parse import quote

log = logging.getLogger(__name__)

# A club's answer is a few bytes of JSON; anything much larger is not an answer.
MAX_ANSWER = 64 * 1024


def check_membership(url_template: str, first_name: str, last_name: str, timeout: float):
    """True or False from the service's `is_current_member`, or None ("unknown") when the
    service is slow, down or answers nonsense: a sign-up is never blocked by it."""
    url = url_template.format(first_name=quote(first_name), last_name=quote(last_name))
    if not url.startswith(("http://", "https://")):
        log.warning("membership check URL %r is not http(s)", url_template)
        return None
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            answer = json.loads(response.read(MAX_ANSWER))["is_current_member"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        # OSError covers URLError, HTTPError, refused connections and timeouts.
        log.warning("membership check for %s %s failed: %s", first_name, last_name, error)
        return None
    if not isinstance(answer, bool):
        log.warning("membership check answered %r, not true/false", answer)
        return None
    return answer
