from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-11-22T05:24:15:769844"
VERSION = "1.38.0"
DESCRIPTION = "composite unique and sort indexes"


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="ledger", description=DESCRIPTION)

    statements = (
        "CREATE UNIQUE INDEX journal_entry_source_event_key ON journal_entry (source_type, source_id, event)",
    )

    async def run() -> None:
        # Plain SQL both engines understand; composite unique constraints are
        # created as unique indexes because SQLite cannot ALTER TABLE ADD CONSTRAINT.
        db = engine_finder()
        for statement in statements:
            await db.run_ddl(statement)

    manager.add_raw(run)

    return manager
