from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-11-22T06:56:29:655453"
VERSION = "1.38.0"
DESCRIPTION = "usage event dedup index"


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="usage", description=DESCRIPTION)

    statements = (
        "CREATE UNIQUE INDEX usage_event_organization_event_id_key"
        " ON usage_event (organization, event_id)",
    )

    async def run() -> None:
        db = engine_finder()
        for statement in statements:
            await db.run_ddl(statement)

    manager.add_raw(run)

    return manager
