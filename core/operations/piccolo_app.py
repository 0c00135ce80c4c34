"""Piccolo app for the operations area: its tables and where its migrations live."""

from pathlib import Path

from piccolo.conf.apps import AppConfig, table_finder

APP_CONFIG = AppConfig(
    app_name="operations",
    migrations_folder_path=str(Path(__file__).resolve().parents[2] / "migrations" / "operations"),
    table_classes=table_finder(modules=["core.operations.tables"], exclude_imported=True),
    migration_dependencies=[],
    commands=[],
)
