from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-11-22T07:46:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "one active autopay enrollment per account, one default method per group"


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="wallet", description=DESCRIPTION)

    async def run() -> None:
        # Enrolling twice at once (two tabs) cannot leave two active enrollments.
        await engine_finder().run_ddl(
            "CREATE UNIQUE INDEX autopay_enrollment_active_key "
            "ON autopay_enrollment (billing_account) WHERE active"
        )
        # At most one default method per customer group.
        await engine_finder().run_ddl(
            "CREATE UNIQUE INDEX saved_payment_method_default_key "
            "ON saved_payment_method (organization) WHERE is_default AND removed_at IS NULL"
        )

    manager.add_raw(run)

    return manager
