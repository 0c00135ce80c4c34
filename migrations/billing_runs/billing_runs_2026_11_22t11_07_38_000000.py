from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-11-22T11:07:38:000000"
VERSION = "1.38.0"
DESCRIPTION = "At most one catch-up run continues a run: unique index on invoice_run.follows"


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="billing_runs", description=DESCRIPTION)

    async def run() -> None:
        # a unique index, not a UNIQUE column: SQLite cannot add a UNIQUE column
        await engine_finder().run_ddl(
            "CREATE UNIQUE INDEX invoice_run_follows_key ON invoice_run (follows)"
        )

    manager.add_raw(run)

    return manager
