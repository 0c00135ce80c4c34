"""Piccolo app `fx`: Exchange rates (manual and ECB reference rates)."""

from pathlib import Path

from piccolo.conf.apps import AppConfig, table_finder

APP_CONFIG = AppConfig(
    app_name="fx",
    migrations_folder_path=str(Path(__file__).resolve().parents[2] / "migrations" / "fx"),
    table_classes=table_finder(modules=["core.fx.tables"], exclude_imported=True),
    migration_dependencies=[],
    commands=[],
)
