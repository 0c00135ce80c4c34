from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-11-22T07:45:12:000000"
VERSION = "1.38.0"
DESCRIPTION = "one invoice per subscription and period; one chunk number per run"


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="billing_runs", description=DESCRIPTION)

    async def run() -> None:
        # A rerun, a retried job or two workers on one chunk cannot bill a period twice.
        await engine_finder().run_ddl(
            "CREATE UNIQUE INDEX billed_period_subscription_period_key"
            " ON billed_period (subscription, period_start)"
        )
        await engine_finder().run_ddl(
            "CREATE UNIQUE INDEX run_chunk_run_number_key ON run_chunk (run, number)"
        )

    manager.add_raw(run)

    return manager
