"""Piccolo app for the identity area: its tables and where its migrations live."""

from pathlib import Path

from piccolo.conf.apps import AppConfig, table_finder

APP_CONFIG = AppConfig(
    app_name="identity",
    migrations_folder_path=str(Path(__file__).resolve().parents[2] / "migrations" / "identity"),
    table_classes=table_finder(modules=["core.identity.tables"], exclude_imported=True),
    migration_dependencies=[],
    commands=[],
)
