from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.column_types import Integer
from piccolo.columns.indexes import IndexMethod

ID = "2026-11-22T11:07:37:520692"
VERSION = "1.38.0"
DESCRIPTION = "Catch-up runs: invoice_run.follows and catch_up"


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="billing_runs", description=DESCRIPTION)

    manager.add_column(
        table_class_name="InvoiceRun",
        tablename="invoice_run",
        column_name="catch_up",
        db_column_name="catch_up",
        column_class_name="Integer",
        column_class=Integer,
        params={
            "default": 0,
            "null": False,
            "primary_key": False,
            "unique": False,
            "index": False,
            "index_method": IndexMethod.btree,
            "choices": None,
            "db_column_name": None,
            "secret": False,
        },
        schema=None,
    )

    manager.add_column(
        table_class_name="InvoiceRun",
        tablename="invoice_run",
        column_name="follows",
        db_column_name="follows",
        column_class_name="Integer",
        column_class=Integer,
        params={
            "default": None,
            "null": True,
            "primary_key": False,
            "unique": False,
            "index": False,
            "index_method": IndexMethod.btree,
            "choices": None,
            "db_column_name": None,
            "secret": False,
        },
        schema=None,
    )

    return manager
