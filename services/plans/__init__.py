"""Year of Care care and support planning."""
