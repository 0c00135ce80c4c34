"""Write-offs, unapplied cash applications and refunds, with approvals. tables."""

from __future__ import annotations
