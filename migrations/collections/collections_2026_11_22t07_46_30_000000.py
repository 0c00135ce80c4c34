from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-11-22T07:46:30:000000"
VERSION = "1.38.0"
DESCRIPTION = "one reminder per invoice and dunning step"


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="collections", description=DESCRIPTION)

    statements = (
        "CREATE UNIQUE INDEX dunning_reminder_invoice_step_key"
        " ON dunning_reminder (invoice, step_offset)",
    )

    async def run() -> None:
        # Plain SQL both engines understand: a second reminder of the same step for the
        # same invoice fails on this index, whatever the run order or retries.
        db = engine_finder()
        for statement in statements:
            await db.run_ddl(statement)

    manager.add_raw(run)

    return manager
