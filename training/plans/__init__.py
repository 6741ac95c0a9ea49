"""Training plans: checkout, people and seats, Confirm users, support's level change."""
