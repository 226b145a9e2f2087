"""Self-management education groups (Expert Patients Programme, Co-Creating Health)."""
