"""Piccolo app for the ledger area: its tables and where its migrations live."""

from pathlib import Path

from piccolo.conf.apps import AppConfig, table_finder

APP_CONFIG = AppConfig(
    app_name="ledger",
    migrations_folder_path=str(Path(__file__).resolve().parents[2] / "migrations" / "ledger"),
    table_classes=table_finder(modules=["core.ledger.tables"], exclude_imported=True),
    migration_dependencies=["core.identity.piccolo_app"],
    commands=[],
)
