from __future__ import annotations

from core.audit.log import Actor, AuditRecord, record, verify_chain
from core.audit.tables import AuditEvent


async def _events(n: int) -> None:
    for i in range(n):
        await record(
            AuditRecord(
                Actor("customer", str(i), ip="10.0.0.1"),
                "invoice.viewed",
                "invoice",
                i,
                data={"i": i, "note": "ümlaut"},
            )
        )


async def test_chain_verifies_and_detects_an_edited_row(db) -> None:
    await _events(6)
    assert (await verify_chain()).ok
    victim = (await AuditEvent.select(AuditEvent.id).order_by(AuditEvent.id).offset(2).first())[
        "id"
    ]
    await db.run_ddl(f"UPDATE audit_event SET action = 'invoice.paid' WHERE id = {victim}")
    report = await verify_chain(batch=2)
    assert not report.ok
    assert report.first_bad_id == victim


async def test_chain_detects_a_deleted_row(db) -> None:
    await _events(5)
    ids = [r["id"] for r in await AuditEvent.select(AuditEvent.id).order_by(AuditEvent.id)]
    await db.run_ddl(f"DELETE FROM audit_event WHERE id = {ids[1]}")
    report = await verify_chain()
    assert not report.ok
    assert report.first_bad_id == ids[2]


async def test_concurrent_appends_keep_one_chain(db) -> None:
    import asyncio

    await asyncio.gather(*(_events(3) for _ in range(8)))
    report = await verify_chain()
    assert report.ok
    assert report.checked == 24
