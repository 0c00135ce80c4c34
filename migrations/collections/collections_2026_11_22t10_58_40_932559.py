from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.column_types import BigInt
from piccolo.columns.indexes import IndexMethod

ID = "2026-11-22T10:58:40:932559"
VERSION = "1.38.0"
DESCRIPTION = "Chargeback reversals note the realized FX reversed and posted again"


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="collections", description=DESCRIPTION)

    manager.add_column(
        table_class_name="ChargebackReversal",
        tablename="chargeback_reversal",
        column_name="fx_minor",
        db_column_name="fx_minor",
        column_class_name="BigInt",
        column_class=BigInt,
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
        table_class_name="ChargebackReversal",
        tablename="chargeback_reversal",
        column_name="fx_reinstated_minor",
        db_column_name="fx_reinstated_minor",
        column_class_name="BigInt",
        column_class=BigInt,
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

    return manager
