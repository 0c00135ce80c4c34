from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-11-22T05:39:43:689103"
VERSION = "1.38.0"
DESCRIPTION = "unique identity and factor indexes"


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="identity", description=DESCRIPTION)

    statements = (
        "CREATE UNIQUE INDEX external_identity_issuer_subject_key ON external_identity (issuer, subject)",
        "CREATE UNIQUE INDEX mfa_factor_principal_key ON mfa_factor (principal_kind, principal_id)",
        'CREATE INDEX assisted_session_user_status_idx ON assisted_session ("user", status)',
        "CREATE INDEX security_flag_open_idx ON security_flag (kind, subject, resolved_at)",
    )

    async def run() -> None:
        db = engine_finder()
        for statement in statements:
            await db.run_ddl(statement)

    manager.add_raw(run)

    return manager
