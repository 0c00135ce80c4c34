"""Gapless invoice numbers, taken from a locked per-series counter inside the
finalizing transaction: a rolled-back finalize rolls the counter back too."""

from __future__ import annotations

from core.db import for_update
from core.invoicing.rules import format_number
from core.invoicing.tables import NumberSeries


async def next_number(
    *, issuing_entity_id: int, entity_code: str, jurisdiction: str, document_type: str, year: int
) -> str:
    """Must run inside the caller's transaction."""
    where = (
        (NumberSeries.issuing_entity == issuing_entity_id)
        & (NumberSeries.jurisdiction == jurisdiction)
        & (NumberSeries.document_type == document_type)
        & (NumberSeries.year == year)
    )
    prefix = f"{document_type}-{entity_code}"
    await NumberSeries.insert(
        NumberSeries(
            issuing_entity=issuing_entity_id,
            jurisdiction=jurisdiction,
            document_type=document_type,
            year=year,
            prefix=prefix,
            last_number=0,
        )
    ).on_conflict(action="DO NOTHING")
    row = await for_update(
        NumberSeries.select(NumberSeries.id, NumberSeries.prefix, NumberSeries.last_number).where(
            where
        )
    ).first()
    assert row is not None
    sequence = row["last_number"] + 1
    await NumberSeries.update({NumberSeries.last_number: sequence}).where(
        NumberSeries.id == row["id"]
    )
    return format_number(row["prefix"], year, sequence)
