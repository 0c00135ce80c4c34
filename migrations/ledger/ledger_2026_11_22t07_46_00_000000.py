from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-11-22T07:46:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "one lock row per entity and month"


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="ledger", description=DESCRIPTION)

    statements = (
        "CREATE UNIQUE INDEX period_lock_entity_period_key ON period_lock (issuing_entity, period)",
    )

    async def run() -> None:
        # Plain SQL both engines understand (composite unique constraints as unique indexes).
        db = engine_finder()
        for statement in statements:
            await db.run_ddl(statement)

    manager.add_raw(run)

    return manager
