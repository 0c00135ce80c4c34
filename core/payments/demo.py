"""Demo settings of the payments area: approval thresholds of the demo groups.

Globex Holdings: payments above USD/EUR 10,000.00 wait for an approver (alice, the group
admin, approves what bob submits). Initech Group: above 5,000.00 (carol approves).
"""

from __future__ import annotations

from core.identity.tables import CustomerOrganization

DEMO_THRESHOLDS = {"Globex Holdings": 1_000_000, "Initech Group": 500_000}


async def seed_payment_settings() -> None:
    for name, threshold in DEMO_THRESHOLDS.items():
        await CustomerOrganization.update(
            {CustomerOrganization.approval_threshold_minor: threshold}
        ).where((CustomerOrganization.name == name) & CustomerOrganization.parent.is_null())
