"""The invoice-run services' hand-written SQL, on PostgreSQL and on SQLite.

Runs, the draft builder and the reconciliation pass issue a handful of set-based
statements inside the caller's transaction, written for PostgreSQL (asyncpg: ``$n``
placeholders, typed arrays, ``unnest``, ``= ANY``, ``FOR UPDATE``). ``current()`` returns
the transaction's connection behind one asyncpg-style interface (``fetch``, ``fetchrow``,
``fetchval``, ``execute``), so each statement is written once:

* on PostgreSQL every call goes to asyncpg unchanged (same SQL, same speed);
* on SQLite (the embedded default) the statement is translated once (cached) by
  ``to_sqlite``, by these rules only:

  - ``$n`` becomes SQLite's numbered placeholder ``?n``;
  - ``col = ANY($n::bigint[])`` becomes ``col IN (SELECT value FROM json_each(?n))``
    and the list argument is passed as a JSON array;
  - ``unnest($a::t[], $b::t[], …) AS u(x, y, …)`` becomes ``(SELECT ?a AS x, ?b AS y, …)
    AS u`` and the statement runs once per element of the arrays (``executemany`` for a
    write, one query per row for a read), the other arguments repeated on every row;
  - ``FOR UPDATE [OF t]`` is dropped: ``core.db.transaction()`` takes SQLite's write lock
    up front (``BEGIN IMMEDIATE``), so writers are serialized anyway;
  - remaining ``::type`` casts are dropped (SQLite binds values with their own types,
    through the same adapters Piccolo uses, so what we write compares equal to what the
    ORM wrote).

  Anything else PostgreSQL-only (``nextval``, ``GREATEST``, ``jsonb``, aggregate
  ``FILTER``…) is refused with ``ValueError``: such a statement needs its own SQLite
  branch in the caller.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from core.db import engine, is_sqlite

_UNNEST = re.compile(
    r"unnest\((?P<args>[^()]*)\)\s+AS\s+(?P<alias>\w+)\((?P<names>[^()]*)\)", re.IGNORECASE
)
_UNNEST_ARG = re.compile(r"\s*\$(\d+)::\w+\[\]\s*")
_ANY = re.compile(r"=\s*ANY\(\$(\d+)::(?:big)?int\[\]\)", re.IGNORECASE)
_FOR_UPDATE = re.compile(r"\s*\bFOR\s+UPDATE(?:\s+OF\s+\w+(?:\s*,\s*\w+)*)?", re.IGNORECASE)
_CAST = re.compile(r"::\w+(?:\[\])?")
_PARAM = re.compile(r"\$(\d+)")
_POSTGRES_ONLY = re.compile(
    r"\b(unnest|ANY|nextval|generate_series|GREATEST|LEAST|jsonb\w*|array_agg|FILTER)\s*\(",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class SqliteStatement:
    sql: str
    per_row: tuple[int, ...] = ()  # 0-based arguments whose lists give one row each
    json_arrays: tuple[int, ...] = ()  # 0-based arguments passed as a JSON array

    def rows(self, args: Sequence[Any]) -> list[tuple[Any, ...]]:
        """The parameter tuples to bind: one, or one per element of the unnested lists."""
        values = list(args)
        for k in self.json_arrays:
            values[k] = json.dumps([int(v) for v in values[k]])
        if not self.per_row:
            return [tuple(values)]
        lengths = {len(values[k]) for k in self.per_row}
        if len(lengths) != 1:
            raise ValueError("unnest arrays of different lengths")
        [count] = lengths
        return [
            tuple(v[i] if k in self.per_row else v for k, v in enumerate(values))
            for i in range(count)
        ]


@lru_cache(maxsize=256)
def to_sqlite(sql: str) -> SqliteStatement:
    """Translate one of our PostgreSQL statements (see the module's rules)."""
    per_row: list[int] = []

    def unnest(match: re.Match[str]) -> str:
        params = []
        for arg in match["args"].split(","):
            found = _UNNEST_ARG.fullmatch(arg)
            if found is None:
                raise ValueError(f"unnest: not an array parameter: {arg.strip()!r}")
            params.append(int(found.group(1)))
        names = [n.strip() for n in match["names"].split(",")]
        if len(params) != len(names):
            raise ValueError(f"unnest: {len(params)} arrays for {len(names)} names")
        per_row.extend(p - 1 for p in params)
        cols = ", ".join(f"${p} AS {n}" for p, n in zip(params, names, strict=True))
        return f"(SELECT {cols}) AS {match['alias']}"

    json_arrays: list[int] = []

    def any_ids(match: re.Match[str]) -> str:
        json_arrays.append(int(match.group(1)) - 1)
        return f"IN (SELECT value FROM json_each(${match.group(1)}))"

    out = _UNNEST.sub(unnest, sql)
    out = _ANY.sub(any_ids, out)
    out = _FOR_UPDATE.sub("", out)
    out = _CAST.sub("", out)
    leftover = _POSTGRES_ONLY.search(out)
    if leftover:
        raise ValueError(f"no SQLite translation for {leftover.group(0)!r} in: {sql[:80]}")
    out = _PARAM.sub(r"?\1", out)
    return SqliteStatement(out, tuple(per_row), tuple(json_arrays))


class Connection:
    """The current transaction's connection, asyncpg-style, on either engine."""

    __slots__ = ("raw", "sqlite")

    def __init__(self, raw: Any, sqlite: bool) -> None:
        self.raw = raw
        self.sqlite = sqlite

    async def fetch(self, sql: str, *args: Any) -> list[Any]:
        if not self.sqlite:
            return list(await self.raw.fetch(sql, *args))
        statement = to_sqlite(sql)
        out: list[Any] = []
        for row in statement.rows(args):
            out.extend(await self.raw.execute_fetchall(statement.sql, row))
        return out

    async def fetchrow(self, sql: str, *args: Any) -> Any:
        if not self.sqlite:
            return await self.raw.fetchrow(sql, *args)
        rows = await self.fetch(sql, *args)
        return rows[0] if rows else None

    async def fetchval(self, sql: str, *args: Any) -> Any:
        if not self.sqlite:
            return await self.raw.fetchval(sql, *args)
        row = await self.fetchrow(sql, *args)
        return None if row is None else next(iter(row.values()))

    async def execute(self, sql: str, *args: Any) -> None:
        if not self.sqlite:
            await self.raw.execute(sql, *args)
            return
        statement = to_sqlite(sql)
        rows = statement.rows(args)
        if statement.per_row:
            if rows:
                async with self.raw.executemany(statement.sql, rows):
                    pass
            return
        async with self.raw.execute(statement.sql, rows[0]):
            pass


def keyed(statement: str, alias: str) -> str:
    """An ``UPDATE … FROM unnest($1::bigint[], …) AS u … WHERE <alias>.id = u.id`` that on
    PostgreSQL also says ``<alias>.id = ANY($1)``: the planner then fetches the rows by
    primary key instead of walking the whole table's key in a merge join with unnest.
    SQLite runs such a statement once per row already, so it is left as it is."""
    if is_sqlite():
        return statement
    return f"{statement.rstrip()} AND {alias}.id = ANY($1::bigint[])"


def current() -> Connection:
    """The connection of the transaction in progress (``core.db.transaction()``)."""
    tx = engine().current_transaction.get()
    if tx is None:
        raise RuntimeError("run inside core.db.transaction()")
    return Connection(tx.connection, is_sqlite())
