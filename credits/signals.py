"""Signals the ledger sends after a commit, for other apps to react without the ledger
knowing them (billing's auto top-up listens to `available_lowered`)."""

from django.dispatch import Signal

# Sent once the transaction that lowered an organization's available credits (a redemption,
# new holds, a transfer out of an account) has committed; argument: organization_id.
available_lowered = Signal()
