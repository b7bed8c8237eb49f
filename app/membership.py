"""Is a rider a current club member? Asked of the club's membership service over HTTP."""

import logging
from urllib.parse import quote

import requests

log = logging.getLogger(__name__)


def check_membership(url_template: str, first_name: str, last_name: str, timeout: float):
    """True or False from the service's `is_current_member`, or None ("unknown") when the
    service is slow, down or answers nonsense: a sign-up is never blocked by it."""
    url = url_template.format(first_name=quote(first_name), last_name=quote(last_name))
    try:
        response = requests.get(url, timeout=timeout)
        response.raise_for_status()
        answer = response.json()["is_current_member"]
    except (requests.RequestException, ValueError, KeyError, TypeError) as error:
        log.warning("membership check for %s %s failed: %s", first_name, last_name, error)
        return None
    if not isinstance(answer, bool):
        log.warning("membership check answered %r, not true/false", answer)
        return None
    return answer
