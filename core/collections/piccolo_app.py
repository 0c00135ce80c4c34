"""Piccolo app `collections`: Chargebacks, dunning schedules and reminders, promises to pay."""

from pathlib import Path

from piccolo.conf.apps import AppConfig, table_finder

APP_CONFIG = AppConfig(
    app_name="collections",
    migrations_folder_path=str(Path(__file__).resolve().parents[2] / "migrations" / "collections"),
    table_classes=table_finder(modules=["core.collections.tables"], exclude_imported=True),
    migration_dependencies=[
        "core.identity.piccolo_app",
        "core.invoicing.piccolo_app",
        "core.payments.piccolo_app",
    ],
    commands=[],
)
