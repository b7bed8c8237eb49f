"""What the database rewrite (database.py) and the leak scan (leaks.py) share on SQLite, so that
values are judged where they are and only what may change, or may leak, reaches Python: the
rules' Python functions made callable from SQL (`sql_functions`), and the cheap SQL test that
spares calling them (`may_hold`).
"""

from collections.abc import Callable
from contextlib import contextmanager

from sqlalchemy import LargeBinary, and_, cast, func, or_
from sqlalchemy.exc import DBAPIError

# Characters outside ASCII that Python takes for ASCII letters: str.lower() makes the dotted
# capital I an i (and a dot) and the Kelvin sign a k, and IGNORECASE also matches the dotless i
# and the long s with i and s (tests/test_sanitize.py checks this Python's Unicode tables).
CASE_LIKE_ASCII = "\u0130\u0131\u017f\u212a"


@contextmanager
def sql_functions(connection, functions: dict[str, tuple[Callable, bool]]):
    """name -> (function, deterministic): callable from SQL on the SQLite connection
    behind `connection` while inside, and gone after (they hold the options), with LIKE ignoring
    ASCII letters' case. SQLite only says that a function failed: the function's own exception is
    raised instead."""
    driver = connection.connection.driver_connection
    errors: list[Exception] = []

    def recording(function):
        # One argument or two without packing them (millions of calls).
        if function.__code__.co_argcount == 2:

            def call_with_two(value, other):
                try:
                    return function(value, other)
                except Exception as error:
                    errors.append(error)
                    raise

            return call_with_two

        def call(value):
            try:
                return function(value)
            except Exception as error:
                errors.append(error)
                raise

        return call

    for name, (function, deterministic) in functions.items():
        driver.create_function(
            name, function.__code__.co_argcount, recording(function), deterministic=deterministic
        )
    # SQLite's default, which the SQL around the functions counts on (`may_hold`).
    connection.exec_driver_sql("PRAGMA case_sensitive_like = OFF")
    try:
        yield
    except DBAPIError as error:
        if errors:
            raise errors[0] from error
        raise
    finally:
        for name, (function, _deterministic) in functions.items():
            driver.create_function(name, function.__code__.co_argcount, None)


def may_hold(col, production_domain: str):
    """SQL, false only for text that holds neither "@" nor the production hostname, not even as
    Python reads it in lower case (str.lower) or ignoring case (IGNORECASE): then `scrub` returns
    it as it is and `leaks_in` finds nothing in it. instr() is the cheapest test and reads past a
    NUL, so "@" is looked for with it, and so is the hostname's "." (no other character is "."
    to Python, in lower case or ignoring case: tests/test_sanitize.py checks), which spares the
    hostname's own test on names and other text without a dot. That test is LIKE: it stops at a
    NUL, only knows ASCII letters' case (`sql_functions` makes sure it ignores that case) and may
    never match a blob, so text with a NUL or one of CASE_LIKE_ASCII is left to Python, as is a
    blob, and every value when the hostname is not ASCII. (A number holds neither.)"""
    domain = production_domain.lower()
    if not domain.isascii():
        return col.is_not(None)
    hostname = or_(
        col.like(f"%{domain}%"),  # a "_" or "%" in it matches more: no harm
        and_(
            not_plain_ascii(col),
            or_(
                func.instr(col, func.char(0)) > 0,
                *(func.instr(col, character) > 0 for character in CASE_LIKE_ASCII),
            ),
        ),
    )
    if "." in domain:
        hostname = and_(func.instr(col, ".") > 0, hostname)
    return or_(func.instr(col, "@") > 0, hostname, func.typeof(col) == "blob")


def not_plain_ascii(col):
    """SQL: text with a character outside ASCII, or a NUL (its length in characters, which
    length() counts up to a NUL, is not its length in bytes)."""
    return func.length(col) != func.length(cast(col, LargeBinary))
