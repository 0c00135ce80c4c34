"""Write-offs, unapplied cash applications and refunds, with approvals."""
