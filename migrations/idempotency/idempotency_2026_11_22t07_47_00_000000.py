from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-11-22T07:47:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "one idempotency record per (organization, key)"


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="idempotency", description=DESCRIPTION)

    async def run() -> None:
        # Concurrent requests with one key: exactly one insert wins, the others read it.
        await engine_finder().run_ddl(
            "CREATE UNIQUE INDEX idempotency_record_org_key "
            "ON idempotency_record (organization, key)"
        )

    manager.add_raw(run)

    return manager
