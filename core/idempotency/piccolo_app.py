"""Piccolo app `idempotency`: Idempotency keys of mutating API calls and portal actions."""

from pathlib import Path

from piccolo.conf.apps import AppConfig, table_finder

APP_CONFIG = AppConfig(
    app_name="idempotency",
    migrations_folder_path=str(Path(__file__).resolve().parents[2] / "migrations" / "idempotency"),
    table_classes=table_finder(modules=["core.idempotency.tables"], exclude_imported=True),
    migration_dependencies=["core.identity.piccolo_app"],
    commands=[],
)
