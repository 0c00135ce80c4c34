"""Gapless invoice numbers, taken from locked per-series counters inside the
finalizing transaction: a rolled-back finalize rolls the counter back too."""

from __future__ import annotations

from core.db import for_update
from core.invoicing.rules import DEFAULT_NUMBER_FORMAT, render_number
from core.invoicing.tables import NumberSeries


async def take_numbers(
    groups: dict[tuple[int, str, str, int], list[int]],
    entity_codes: dict[int, str],
    formats: dict[int, str],
) -> dict[int, str]:
    """Take a block of numbers per series: invoice id → number.

    ``groups`` maps (issuing entity, jurisdiction, document code, year) to invoice ids.
    Must run inside the caller's transaction: each counter row is locked once (series
    in sorted order, so concurrent callers never deadlock), advanced by the block size,
    and the block is assigned in invoice id order. A rolled-back transaction rolls the
    counter back too, so numbers stay gapless and are never reused.
    """
    numbers: dict[int, str] = {}
    for key in sorted(groups):
        entity_id, jurisdiction, doc, year = key
        invoice_ids = sorted(groups[key])
        await NumberSeries.insert(
            NumberSeries(
                issuing_entity=entity_id,
                jurisdiction=jurisdiction,
                document_type=doc,
                year=year,
                prefix=f"{doc}-{entity_codes[entity_id]}",
                last_number=0,
                number_format=formats.get(entity_id) or DEFAULT_NUMBER_FORMAT,
            )
        ).on_conflict(action="DO NOTHING")
        series = await for_update(
            NumberSeries.select(
                NumberSeries.id, NumberSeries.last_number, NumberSeries.number_format
            ).where(
                (NumberSeries.issuing_entity == entity_id)
                & (NumberSeries.jurisdiction == jurisdiction)
                & (NumberSeries.document_type == doc)
                & (NumberSeries.year == year)
            )
        ).first()
        assert series is not None
        first = int(series["last_number"]) + 1
        await NumberSeries.update({NumberSeries.last_number: first + len(invoice_ids) - 1}).where(
            NumberSeries.id == series["id"]
        )
        fmt = series["number_format"] or DEFAULT_NUMBER_FORMAT
        for offset, invoice_id in enumerate(invoice_ids):
            numbers[invoice_id] = render_number(
                fmt,
                doc=doc,
                entity=entity_codes[entity_id],
                jurisdiction=jurisdiction,
                year=year,
                sequence=first + offset,
            )
    return numbers
