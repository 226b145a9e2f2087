"""The shared kernel: only the plumbing every service needs."""
