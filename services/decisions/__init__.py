"""Shared decision-making (NICE NG197): the options, what matters to the person, and what was decided."""
