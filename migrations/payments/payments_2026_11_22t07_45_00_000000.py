from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-11-22T07:45:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "one payment per billing account of an attempt"


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="payments", description=DESCRIPTION)

    async def run() -> None:
        # Settling an attempt twice (webhook and return page racing) cannot create a
        # second payment for the same account: the insert fails on this index.
        await engine_finder().run_ddl(
            "CREATE UNIQUE INDEX payment_attempt_account_key ON payment (attempt, billing_account)"
        )

    manager.add_raw(run)

    return manager
