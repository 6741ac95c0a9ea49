"""Assign credits: pool → course → manager, and an admin's direct enrollment."""
