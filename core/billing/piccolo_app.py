"""Piccolo app for billing: subscriptions, their changes and pending charges."""

from pathlib import Path

from piccolo.conf.apps import AppConfig, table_finder

APP_CONFIG = AppConfig(
    app_name="billing",
    migrations_folder_path=str(Path(__file__).resolve().parents[2] / "migrations" / "billing"),
    table_classes=table_finder(modules=["core.billing.tables"], exclude_imported=True),
    migration_dependencies=[
        "core.catalog.piccolo_app",
        "core.identity.piccolo_app",
        "core.invoicing.piccolo_app",
    ],
    commands=[],
)
