from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-11-22T05:24:15:002433"
VERSION = "1.38.0"
DESCRIPTION = "composite unique and sort indexes"


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="invoicing", description=DESCRIPTION)

    statements = (
        "CREATE UNIQUE INDEX number_series_key ON number_series (issuing_entity, jurisdiction, document_type, year)",
        "CREATE UNIQUE INDEX aging_snapshot_account_day_key ON aging_snapshot (billing_account, as_of)",
        "CREATE INDEX invoice_account_due_idx ON invoice (billing_account, due_date, id)",
        "CREATE INDEX invoice_account_total_idx ON invoice (billing_account, total_minor, id)",
    )

    async def run() -> None:
        # Plain SQL both engines understand; composite unique constraints are
        # created as unique indexes because SQLite cannot ALTER TABLE ADD CONSTRAINT.
        db = engine_finder()
        for statement in statements:
            await db.run_ddl(statement)

    manager.add_raw(run)

    return manager
