"""The leak scan: what is left of production's after sanitising, judged value by value.

`leaks_in` is how one value is judged: an address outside the sink or the production hostname is
a leak. `find_leaks` scans every text column of every table in the database with it (database.py
refuses to commit while it finds anything), and files.py scans every rider list it writes the
same way. The scan does not depend on what the rules did: it would find what a missing or wrong
rule left.
"""

import re
from dataclasses import dataclass

from sqlalchemy import String, and_, func, inspect, literal_column, or_, select
from sqlalchemy.sql import column as sql_column
from sqlalchemy.sql import table as sql_table

from .rules import (
    DEFAULT_SINK_DOMAIN,
    address_spans,
    hostname_re,
    is_sink_address,
    may_hold_hostname,
)
from .sqlite import may_hold, not_plain_ascii, sql_functions

# A sink domain that LIKE reads literally (no "_" or "%") and matches ignoring case just as
# Python does (ASCII only): only then may `_only_a_sink_address` pass values over.
PLAIN_HOSTNAME = re.compile(r"[a-z0-9-]+(?:\.[a-z0-9-]+)*")


@dataclass(frozen=True)
class Leak:
    table: str
    column: str
    what: str
    value: str

    def __str__(self) -> str:
        return f"{self.table}.{self.column}: {self.what} in {self.value[:80]!r}"


def find_leaks(
    connection,
    *,
    sink_domain: str = DEFAULT_SINK_DOMAIN,
    production_domain: str,
    limit=20,
    tables: list[tuple[str, int | None, int | None]] | None = None,
) -> list[Leak]:
    """Addresses outside the sink and the production hostname, in every text column of every
    table of the database (not only the models' tables), each value judged by `leaks_in`.
    `tables`, (table, first rowid, last rowid) with None for no bound, scans only those rows
    (a share of the scan, for the sanitised copy's workers, sanitized_copy.py).

    On SQLite the values are judged where they are, by `leaks_in` as a SQL function, in one pass
    over each table, and only the rows with a value that leaks come back. SQL passes over a value
    only where it can tell that `leaks_in` finds nothing in it (`may_hold`,
    `_only_a_sink_address`): the scan does not depend on what the rules did. Elsewhere only
    values with "@" or the production hostname (LIKE) are read."""
    if tables is None:
        tables = [(name, None, None) for name in inspect(connection).get_table_names()]
    if connection.dialect.name != "sqlite":
        return _find_leaks(connection, sink_domain, production_domain, limit, tables, in_sql=False)

    def leaking(value) -> bool:
        return bool(leaks_in(str(value), sink_domain, production_domain))

    with sql_functions(connection, {"randopony_leaking": (leaking, True)}):
        return _find_leaks(connection, sink_domain, production_domain, limit, tables, in_sql=True)


def text_columns(connection, table_name: str) -> list[str]:
    """The table's columns whose declared type is text, as the database has them."""
    return [
        info["name"]
        for info in inspect(connection).get_columns(table_name)
        if isinstance(info["type"], String)
    ]


def _find_leaks(connection, sink_domain, production_domain, limit, tables, *, in_sql):
    leaks = []
    for table_name, first, last in tables:
        names = text_columns(connection, table_name)
        if not names:
            continue
        cols = [sql_column(name) for name in names]
        query = select(*cols).select_from(sql_table(table_name, *cols))
        if first is not None:
            query = query.where(literal_column("rowid") >= first)
        if last is not None:
            query = query.where(literal_column("rowid") <= last)
        if in_sql:
            query = query.where(
                or_(*(_leaking(col, sink_domain, production_domain) for col in cols))
            )
            query = query.limit(limit - len(leaks))
        else:
            domain = production_domain.lower()
            query = query.where(or_(*(col.contains("@") | col.contains(domain) for col in cols)))
        for row in connection.execute(query):
            for name, value in zip(names, row, strict=True):
                if value is None:
                    continue
                leaks += [
                    Leak(table_name, name, what, str(value))
                    for what, _found in leaks_in(str(value), sink_domain, production_domain)
                ]
            if len(leaks) >= limit:
                return leaks[:limit]
    return leaks


def _leaking(col, sink_domain: str, production_domain: str):
    """SQL, true for a value of `col` in which `leaks_in` finds something: asked only of values
    the cheap SQL tests cannot pass over."""
    test = may_hold(col, production_domain)
    sink_only = _only_a_sink_address(col, sink_domain, production_domain)
    if sink_only is not None:
        test = and_(test, ~sink_only)
    return and_(test, func.randopony_leaking(col))


def _only_a_sink_address(col, sink_domain: str, production_domain: str):
    """SQL, true only for a value in which `leaks_in` cannot find anything, so it need not be
    asked: ASCII text without a NUL whose only "@" starts its end, "@" + the sink domain (in any
    case), and without the production hostname. Any address `address_spans` finds in it holds that
    "@", and so ends with the sink domain whole (its characters all continue a domain). None
    when the domains are not plain ASCII hostnames (then no value is passed over this way)."""
    if not (PLAIN_HOSTNAME.fullmatch(sink_domain) and production_domain.isascii()):
        return None
    return and_(
        col.like(f"%@{sink_domain}"),
        ~col.like("%@%@%"),
        ~col.like(f"%{production_domain.lower()}%"),
        ~not_plain_ascii(col),
        func.typeof(col) == "text",
    )


def leaks_in(value: str, sink_domain: str, production_domain: str) -> list[tuple[str, str]]:
    """(what, the text found) for each address outside the sink and each production hostname in
    `value`: how a value is judged, in the database and in the rider list files alike."""
    found = []
    if "@" in value:
        found += [
            ("an address outside the sink", value[start:end])
            for start, end in address_spans(value)
            if not is_sink_address(value[start:end], sink_domain)
        ]
    domain = production_domain.lower()
    if may_hold_hostname(value, domain):
        found += [
            ("the production hostname", match.group())
            for match in hostname_re(domain).finditer(value)
        ]
    return found
