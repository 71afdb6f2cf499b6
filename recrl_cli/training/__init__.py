"""The one training loop, its checkpoints, seeding and device placement."""
