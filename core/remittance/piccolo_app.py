"""Piccolo app `remittance`: Bank statements, their lines, column mappings and matching."""

from pathlib import Path

from piccolo.conf.apps import AppConfig, table_finder

APP_CONFIG = AppConfig(
    app_name="remittance",
    migrations_folder_path=str(Path(__file__).resolve().parents[2] / "migrations" / "remittance"),
    table_classes=table_finder(modules=["core.remittance.tables"], exclude_imported=True),
    migration_dependencies=[
        "core.identity.piccolo_app",
        "core.invoicing.piccolo_app",
        "core.payments.piccolo_app",
    ],
    commands=[],
)
