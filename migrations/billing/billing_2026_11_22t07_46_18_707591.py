from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.base import OnDelete, OnUpdate
from piccolo.columns.column_types import ForeignKey, Integer, Serial
from piccolo.columns.indexes import IndexMethod
from piccolo.table import Table


class SubscriptionChange(Table, tablename="subscription_change", schema=None):
    id = Serial(
        null=False,
        primary_key=True,
        unique=False,
        index=False,
        index_method=IndexMethod.btree,
        choices=None,
        db_column_name="id",
        secret=False,
    )


ID = "2026-11-22T07:46:18:707591"
VERSION = "1.38.0"
DESCRIPTION = "Subscription anchor month and year; pending charge -> subscription change"


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="billing", description=DESCRIPTION)

    manager.add_column(
        table_class_name="PendingCharge",
        tablename="pending_charge",
        column_name="subscription_change",
        db_column_name="subscription_change",
        column_class_name="ForeignKey",
        column_class=ForeignKey,
        params={
            "references": SubscriptionChange,
            "on_delete": OnDelete.restrict,
            "on_update": OnUpdate.cascade,
            "target_column": None,
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

    manager.add_column(
        table_class_name="Subscription",
        tablename="subscription",
        column_name="anchor_month",
        db_column_name="anchor_month",
        column_class_name="Integer",
        column_class=Integer,
        params={
            "default": 1,
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
        table_class_name="Subscription",
        tablename="subscription",
        column_name="anchor_year",
        db_column_name="anchor_year",
        column_class_name="Integer",
        column_class=Integer,
        params={
            "default": 2000,
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
