from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.column_types import Varchar
from piccolo.engine import engine_finder

ID = "2026-11-22T10:41:10:792535"
VERSION = "1.38.0"
DESCRIPTION = (
    "Invoice payments as HOT updates: no status index, a partial index of drafts, fillfactor 85"
)


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="invoicing", description=DESCRIPTION)

    manager.alter_column(
        table_class_name="Invoice",
        tablename="invoice",
        column_name="status",
        db_column_name="status",
        params={"index": False},
        old_params={"index": True},
        column_class=Varchar,
        old_column_class=Varchar,
        schema=None,
    )

    async def run() -> None:
        # The review queue of drafts (a draft has no number until it is finalized), and
        # free space on each page so that a payment's update of balance and status is a
        # HOT update (no index touched); fillfactor is PostgreSQL-only and applies to
        # pages written from now on.
        db = engine_finder()
        await db.run_ddl("CREATE INDEX invoice_drafts_idx ON invoice (id) WHERE number IS NULL")
        if db.engine_type == "postgres":
            await db.run_ddl("ALTER TABLE invoice SET (fillfactor = 85)")

    manager.add_raw(run)

    return manager
