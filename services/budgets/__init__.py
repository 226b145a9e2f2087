"""Personal health budgets (and Care Act personal budgets)."""
