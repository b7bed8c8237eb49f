"""Sanitising the database: every table rewritten by the rules (rules.py) in the caller's
transaction, then the leak scan (leaks.py); anything left refuses the whole run.

On SQLite (the site's database) each table is rewritten by one UPDATE in which SQLite calls the
rules' own functions; with another database the rows go through Python in batches. Either way a
refusal leaves the database as it was. Afterwards `vacuum` rewrites the file, so that no old value
lingers in its free pages.
"""

from collections.abc import Callable

from sqlalchemy import String, Table, bindparam, case, func, or_, select, text

from .. import models
from ..migrations import code_heads
from .leaks import find_leaks
from .rules import (
    DEFAULT_SINK_DOMAIN,
    EMPTIED,
    SAFETY_NET,
    Options,
    Rule,
    SanitizeError,
    checked_options,
    rule_for,
    scrub,
)
from .sqlite import may_hold, sql_functions

# Rows at a time on the row by row path: memory stays bounded whatever the table's size.
BATCH = 2000


def sanitize(
    connection,
    *,
    sink_domain: str = DEFAULT_SINK_DOMAIN,
    production_domain: str,
    staging_domain: str,
    wrangler_password: str,
    sink_key: bytes,
) -> dict[str, int]:
    """Sanitise the database behind `connection` (a SQLAlchemy Connection) in its transaction;
    the caller commits: `with engine.begin() as connection: sanitize(connection, ...)`.

    The database must be at this code's alembic head. Returns the rows changed (or, for the
    outbox, deleted) per table. Running it again is harmless. Raises SanitizeError, before
    anything is committed, when anything personal or production's would be left."""
    options = checked_options(
        sink_domain, production_domain, staging_domain, wrangler_password, sink_key
    )
    return sanitize_with_options(connection, options)


def sanitize_with_options(connection, options: Options) -> dict[str, int]:
    """`sanitize`, with Options made by `checked_options`."""
    check_revision(connection)
    counts = {}
    for table in models.metadata.sorted_tables:
        if table.name in EMPTIED:
            counts[table.name] = connection.execute(table.delete()).rowcount
        else:
            counts[table.name] = _sanitize_table(connection, table, options)
    leaks = find_leaks(
        connection, sink_domain=options.sink_domain, production_domain=options.production_domain
    )
    if leaks:
        raise SanitizeError("left after sanitising: " + "; ".join(map(str, leaks)))
    return counts


def check_revision(connection) -> None:
    revision = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    if (revision,) != code_heads():
        raise SanitizeError(
            f"the database is at revision {revision}, this code's head is "
            f"{', '.join(code_heads())}: migrate it first, the rules follow the models"
        )


def rewrites(table: Table) -> dict[str, Rule]:
    """column -> the rule that rewrites it: its own, or the safety net for any other text column.
    Columns whose rule changes every value (not the scrub) first."""
    ruled = {}
    for column in table.columns:
        rule = rule_for(table.name, column.name)
        if rule is not None and rule.rewrite is not None:
            ruled[column.name] = rule
        elif isinstance(column.type, String):
            ruled[column.name] = SAFETY_NET
    return dict(sorted(ruled.items(), key=lambda item: item[1].rewrite is scrub))


def _sanitize_table(connection, table: Table, options: Options) -> int:
    """Rewrite the table's ruled and text columns; returns the rows changed (a row counts once
    however many of its values change, and a row none of whose values change is not written)."""
    ruled = rewrites(table)
    if not ruled:
        return 0
    if connection.dialect.name == "sqlite":
        return _sanitize_table_in_sql(connection, table, ruled, options)
    return _sanitize_table_by_rows(connection, table, ruled, options)


def _sanitize_table_in_sql(connection, table: Table, rewrites: dict[str, Rule], options) -> int:
    """One statement for the whole table, SQLite calling the rules' own functions:

        UPDATE t SET a = f(a), b = g(b) WHERE f(a) IS NOT a OR g(b) IS NOT b

    IS NOT is equality where NULL equals NULL (a NULL stays NULL), under the binary collation
    (Python's ==): the rows written and counted are the rows the rules change, as by rows. SQLite
    calls f(a) in WHERE and again in SET: the function remembers its last value (`_sql_rewrite`).
    The scrub is only called for a value SQLite cannot tell it keeps (`may_hold`)."""
    functions, new = {}, {}
    for i, (name, rule) in enumerate(rewrites.items()):
        sql_name = f"randopony_sanitize_{i}"
        functions[sql_name] = (_sql_rewrite(rule, options), rule.deterministic)
        column = table.c[name]
        new[name] = getattr(func, sql_name)(column)
        if rule.rewrite is scrub:
            # scrub returns a value without "@" nor the production hostname as it is
            may_change = may_hold(column, options.production_domain)
            new[name] = case((may_change, new[name]), else_=column)
    changed = or_(*(new[name].collate("BINARY").is_distinct_from(table.c[name]) for name in new))
    with sql_functions(connection, functions):
        return connection.execute(table.update().values(new).where(changed)).rowcount


def _sql_rewrite(rule: Rule, options: Options) -> Callable:
    """The rule's rewrite as a function of one value; NULL stays NULL. A deterministic one keeps
    its last value and result, so the same value (the same row's, in WHERE then SET) is rewritten
    once."""
    rewrite = rule.rewrite
    if not rule.deterministic:
        return lambda value: None if value is None else rewrite(value, options)
    last = [None, None]

    def call(value):
        if value is None:
            return None
        if type(value) is not str or value != last[0]:
            last[:] = value, rewrite(value, options)
        return last[1]

    return call


def _sanitize_table_by_rows(connection, table: Table, rewrites: dict[str, Rule], options) -> int:
    """For other databases than SQLite: the rows in batches, rewritten in Python."""
    [key] = table.primary_key.columns
    statement = (
        table.update()
        .where(key == bindparam("old_key"))
        .values({name: bindparam(f"new_{name}") for name in rewrites})
    )
    changed, last = 0, None
    while True:
        query = select(key, *(table.c[name] for name in rewrites)).order_by(key).limit(BATCH)
        if last is not None:
            query = query.where(key > last)
        rows = connection.execute(query).all()
        if not rows:
            return changed
        updates = []
        for row in rows:
            old = row._mapping
            new = {
                name: (rule.rewrite(old[name], options) if old[name] is not None else None)
                for name, rule in rewrites.items()
            }
            if any(new[name] != old[name] for name in rewrites):
                updates.append(
                    {"old_key": row[0], **{f"new_{name}": new[name] for name in rewrites}}
                )
        if updates:
            connection.execute(statement, updates)
            changed += len(updates)
        last = rows[-1][0]


def vacuum(engine) -> None:
    """Rewrite the file: deleted and overwritten values no longer linger in free pages. On the
    raw connection, outside any transaction (the engine's begin hook would start one)."""
    raw = engine.raw_connection()
    try:
        raw.driver_connection.execute("VACUUM")
    finally:
        raw.close()
