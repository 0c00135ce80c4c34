from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-11-22T07:46:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "one rate per pair, day and source"


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="fx", description=DESCRIPTION)

    statements = (
        "CREATE UNIQUE INDEX exchange_rate_key ON exchange_rate (base, quote, rate_date, source)",
        "CREATE INDEX exchange_rate_pair_idx ON exchange_rate (base, quote, rate_date)",
    )

    async def run() -> None:
        # Plain SQL both engines understand (composite unique constraints as unique indexes).
        db = engine_finder()
        for statement in statements:
            await db.run_ddl(statement)

    manager.add_raw(run)

    return manager
