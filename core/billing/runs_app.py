"""Piccolo app `billing_runs`: Invoice runs, their chunks and billed periods; billable metrics."""

from pathlib import Path

from piccolo.conf.apps import AppConfig, table_finder

APP_CONFIG = AppConfig(
    app_name="billing_runs",
    migrations_folder_path=str(Path(__file__).resolve().parents[2] / "migrations" / "billing_runs"),
    table_classes=table_finder(modules=["core.billing.run_tables"], exclude_imported=True),
    migration_dependencies=["core.billing.piccolo_app", "core.usage.piccolo_app"],
    commands=[],
)
