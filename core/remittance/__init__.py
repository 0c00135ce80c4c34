"""Bank statements, their lines, column mappings and matching."""
