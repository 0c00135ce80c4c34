"""Piccolo app for the usage area: API keys and usage events."""

from pathlib import Path

from piccolo.conf.apps import AppConfig, table_finder

APP_CONFIG = AppConfig(
    app_name="usage",
    migrations_folder_path=str(Path(__file__).resolve().parents[2] / "migrations" / "usage"),
    table_classes=table_finder(modules=["core.usage.tables"], exclude_imported=True),
    migration_dependencies=["core.identity.piccolo_app"],
    commands=[],
)
