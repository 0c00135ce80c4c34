from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-11-22T07:49:30:000000"
VERSION = "1.38.0"
DESCRIPTION = "one known-payer row per (payer key, billing account)"


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="remittance", description=DESCRIPTION)

    async def run() -> None:
        await engine_finder().run_ddl(
            "CREATE UNIQUE INDEX remittance_known_payer_key_account"
            " ON remittance_known_payer (payer_key, billing_account)"
        )

    manager.add_raw(run)

    return manager
