"""Piccolo app `wallet`: Saved payment methods (Stripe tokens only) and autopay enrollments."""

from pathlib import Path

from piccolo.conf.apps import AppConfig, table_finder

APP_CONFIG = AppConfig(
    app_name="wallet",
    migrations_folder_path=str(Path(__file__).resolve().parents[2] / "migrations" / "wallet"),
    table_classes=table_finder(modules=["core.wallet.tables"], exclude_imported=True),
    migration_dependencies=[
        "core.identity.piccolo_app",
        "core.invoicing.piccolo_app",
        "core.payments.piccolo_app",
    ],
    commands=[],
)
