"""Piccolo app for the invoicing area: its tables and where its migrations live."""

from pathlib import Path

from piccolo.conf.apps import AppConfig, table_finder

APP_CONFIG = AppConfig(
    app_name="invoicing",
    migrations_folder_path=str(Path(__file__).resolve().parents[2] / "migrations" / "invoicing"),
    table_classes=table_finder(modules=["core.invoicing.tables"], exclude_imported=True),
    migration_dependencies=["core.identity.piccolo_app"],
    commands=[],
)
