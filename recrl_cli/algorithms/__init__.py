"""Algorithms: each supplies update math and stages; the trainer owns iteration, checkpoints and logging."""
