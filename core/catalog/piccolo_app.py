"""Piccolo app for the catalog: products, prices and discounts."""

from pathlib import Path

from piccolo.conf.apps import AppConfig, table_finder

APP_CONFIG = AppConfig(
    app_name="catalog",
    migrations_folder_path=str(Path(__file__).resolve().parents[2] / "migrations" / "catalog"),
    table_classes=table_finder(modules=["core.catalog.tables"], exclude_imported=True),
    migration_dependencies=[],
    commands=[],
)
