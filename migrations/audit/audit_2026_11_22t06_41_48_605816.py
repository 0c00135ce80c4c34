from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-11-22T06:41:48:605816"
VERSION = "1.38.0"
DESCRIPTION = "index for assisted-session activity"


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="audit", description=DESCRIPTION)

    async def run() -> None:
        # "What was done" in an assisted session reads events on behalf of a customer
        # within a time window.
        await engine_finder().run_ddl(
            "CREATE INDEX audit_event_on_behalf_idx ON audit_event (on_behalf_of, occurred_at)"
        )

    manager.add_raw(run)

    return manager
