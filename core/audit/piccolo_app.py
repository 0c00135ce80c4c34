"""Piccolo app for the audit area: its tables and where its migrations live."""

from pathlib import Path

from piccolo.conf.apps import AppConfig, table_finder

APP_CONFIG = AppConfig(
    app_name="audit",
    migrations_folder_path=str(Path(__file__).resolve().parents[2] / "migrations" / "audit"),
    table_classes=table_finder(modules=["core.audit.tables"], exclude_imported=True),
    migration_dependencies=[],
    commands=[],
)
