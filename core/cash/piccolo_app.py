"""Piccolo app `cash`: Write-offs, unapplied cash applications and refunds, with approvals."""

from pathlib import Path

from piccolo.conf.apps import AppConfig, table_finder

APP_CONFIG = AppConfig(
    app_name="cash",
    migrations_folder_path=str(Path(__file__).resolve().parents[2] / "migrations" / "cash"),
    table_classes=table_finder(modules=["core.cash.tables"], exclude_imported=True),
    migration_dependencies=[
        "core.identity.piccolo_app",
        "core.invoicing.piccolo_app",
        "core.payments.piccolo_app",
    ],
    commands=[],
)
