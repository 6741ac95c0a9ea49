"""Invitations: a manager's invitations to a course, and a plan's join links."""
