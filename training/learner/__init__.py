"""My training: what a learner starts and how far they are."""
