from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-11-22T07:46:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "one pending write-off request per invoice"


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="cash", description=DESCRIPTION)

    async def run() -> None:
        # Two staff members requesting a write-off of the same invoice at once: the
        # second insert fails on this partial index (PostgreSQL and SQLite both have them).
        await engine_finder().run_ddl(
            "CREATE UNIQUE INDEX write_off_pending_invoice_key ON write_off (invoice) "
            "WHERE status = 'pending_approval'"
        )

    manager.add_raw(run)

    return manager
