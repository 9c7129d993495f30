"""Optional integrations; each imports its library only when a run uses it."""
