"""Set-based writes for bulk services (finalization, tax): one statement for many rows.

On PostgreSQL rows travel as typed arrays through ``unnest`` (a constant number of
parameters however many rows); on SQLite (the small embedded setup) the same calls
fall back to ordinary per-row or chunked ORM queries. Column names come from code,
never from input.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from piccolo.columns import Column
from piccolo.columns.combination import Combinable, WhereRaw
from piccolo.table import Table

from core.db import is_sqlite

_SQLITE_CHUNK = 200


def among(column: Column, ids: Sequence[int]) -> Combinable:
    """``column IN ids`` as one array parameter on PostgreSQL (``= ANY``), so a batch of
    thousands of ids costs one parameter, not thousands; ``is_in`` on SQLite."""
    if is_sqlite():
        return column.is_in(list(ids))
    table = column._meta.table._meta.tablename
    return WhereRaw(f'"{table}"."{column._meta.db_column_name}" = ANY({{}}::bigint[])', list(ids))


def _arrays(types: Mapping[str, str], rows: Sequence[Mapping[str, Any]]) -> list[list[Any]]:
    return [[row[name] for row in rows] for name in types]


async def update_rows(
    table: type[Table], types: Mapping[str, str], rows: Sequence[Mapping[str, Any]]
) -> None:
    """``UPDATE table SET col = v.col, … WHERE id = v.id`` for every row; ``types`` maps
    each column (``id`` first) to its PostgreSQL type."""
    if not rows:
        return
    names = list(types)
    assert names[0] == "id"
    if is_sqlite():
        for row in rows:
            await table.update({getattr(table, n): row[n] for n in names[1:]}).where(
                table._meta.primary_key == row["id"]
            )
        return
    unnest = ", ".join(f"{{}}::{types[n]}[]" for n in names)
    sets = ", ".join(f'"{n}" = v."{n}"' for n in names[1:])
    cols = ", ".join(f'"{n}"' for n in names)
    name = table._meta.tablename
    # "t.id = ANY(ids)" lets the planner fetch the rows by primary key instead of walking
    # the whole table's index in a merge join with unnest
    sql = (
        f'UPDATE "{name}" AS t SET {sets} FROM unnest({unnest}) AS v({cols})'
        f" WHERE t.id = v.id AND t.id = ANY({{}}::{types['id']}[])"
    )
    arrays = _arrays(types, rows)
    await table.raw(sql, *arrays, arrays[0])


async def insert_rows(
    table: type[Table],
    types: Mapping[str, str],
    rows: Sequence[Mapping[str, Any]],
    returning: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """Insert many rows in one statement; returns the ``returning`` columns per row."""
    if not rows:
        return []
    names = list(types)
    if is_sqlite():
        out: list[dict[str, Any]] = []
        for start in range(0, len(rows), _SQLITE_CHUNK):
            chunk = rows[start : start + _SQLITE_CHUNK]
            query = table.insert(*[table(**{n: row[n] for n in names}) for row in chunk])
            if returning:
                query = query.returning(*[getattr(table, r) for r in returning])
            result = await query
            out.extend(result or [])
        return out
    unnest = ", ".join(f"{{}}::{types[n]}[]" for n in names)
    cols = ", ".join(f'"{n}"' for n in names)
    name = table._meta.tablename
    sql = f'INSERT INTO "{name}" ({cols}) SELECT * FROM unnest({unnest})'
    if returning:
        sql += " RETURNING " + ", ".join(f'"{r}"' for r in returning)
    return list(await table.raw(sql, *_arrays(types, rows)))
