from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.column_types import ForeignKey

ID = "2026-11-22T10:23:42:949094"
VERSION = "1.38.0"
DESCRIPTION = (
    "Drop the single-column invoice.billing_account index (the composite account indexes cover it)"
)


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="invoicing", description=DESCRIPTION)

    manager.alter_column(
        table_class_name="Invoice",
        tablename="invoice",
        column_name="billing_account",
        db_column_name="billing_account",
        params={"index": False},
        old_params={"index": True},
        column_class=ForeignKey,
        old_column_class=ForeignKey,
        schema=None,
    )

    return manager
