"""Synthetic item text that carries a planted signal: words correlated with each item's hidden quality.

The generators call :func:`quality_texts` with the quality they planted (RetailRocket: the item's click random
effect; KuaiRand: the video bias). Items are cut into ``levels`` quality quantiles; each level owns a small set of
words, and each of an item's ``words`` words is, with probability ``signal``, drawn from its level's set and
otherwise from a shared filler set. So the text predicts quality only in part, like a real caption, and a model
can learn it only through the words (the level itself is never written). A separate generator keeps the
dataset's own random stream, and so its files, unchanged.
"""

from __future__ import annotations

import numpy as np

LEVEL_WORDS = (
    ("dull", "boring", "broken", "meh", "flat"),
    ("plain", "basic", "ordinary", "usual", "simple"),
    ("decent", "solid", "handy", "neat", "fine"),
    ("great", "lovely", "bright", "fresh", "sharp"),
    ("amazing", "superb", "stunning", "brilliant", "perfect"),
)
FILLER_WORDS = (
    "video", "item", "today", "new", "look", "with", "and", "the", "for", "my", "style", "home", "day",
    "best", "this", "life", "fun", "music", "food", "travel", "pet", "game", "color", "light", "part",
)  # fmt: skip


def quality_texts(
    quality: np.ndarray, seed: int, *, words: int = 6, signal: float = 0.5, levels: int = len(LEVEL_WORDS)
) -> list[str]:
    """One text per item: quality [I] float -> I space-separated strings of ``words`` words."""
    if not 1 <= levels <= len(LEVEL_WORDS):
        raise ValueError(f"levels must be in [1, {len(LEVEL_WORDS)}], got {levels}")
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x7E47]))
    n = int(quality.shape[0])
    # Quantile level of each item: rank / n scaled to 0..levels-1 (ties broken by position, deterministic).
    level = (np.argsort(np.argsort(quality, kind="stable"), kind="stable") * levels) // max(n, 1)
    level_vocab = np.array([w for lv in LEVEL_WORDS[:levels] for w in lv])
    per_level = len(LEVEL_WORDS[0])
    filler = np.array(FILLER_WORDS)
    signal_pick = level[:, None] * per_level + rng.integers(0, per_level, (n, words))
    filler_pick = rng.integers(0, filler.size, (n, words))
    use_signal = rng.random((n, words)) < signal
    table = np.where(use_signal, level_vocab[signal_pick], filler[filler_pick])
    return [" ".join(row) for row in table.tolist()]
