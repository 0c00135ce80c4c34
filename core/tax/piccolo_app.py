"""Piccolo app `tax`: Tax registrations, rates, provider settings and calculation records."""

from pathlib import Path

from piccolo.conf.apps import AppConfig, table_finder

APP_CONFIG = AppConfig(
    app_name="tax",
    migrations_folder_path=str(Path(__file__).resolve().parents[2] / "migrations" / "tax"),
    table_classes=table_finder(modules=["core.tax.tables"], exclude_imported=True),
    migration_dependencies=["core.identity.piccolo_app"],
    commands=[],
)
