"""Random feature and row tables of KuaiRand-Pure's shape, for building a response model and an environment
without a prepared dataset (unit tests, the speed benchmark at real size).

The cardinalities are Pure's (hac_kuaisim.md §2.3: 13 user one-hots, video_type/upload_type/music_type and 47
tags), plus the id 0 that prepared tables reserve for missing values. Rows follow the prepared row table's
layout (user-sorted, ``user_start``/``user_pos``), with labels drawn at Pure's positive rates.
"""

from __future__ import annotations

import torch

from recrl_cli.data.kuairand_tensors import FeatureTable, RowTable

PURE_USERS, PURE_ITEMS = 19_574, 5_659
USER_CARDS = (9, 2, 2, 8, 9, 7, 8, 2, 7, 3, 7, 5, 5)
ITEM_CARDS = (3, 14, 6)
TAGS, MAX_TAGS = 47, 3
POSITIVE_RATE = (0.460, 0.332, 0.0185, 0.0025, 0.00096, 0.0011, 0.00049)  # §2.1, BEHAVIOURS order


def synthetic_feature_tables(
    num_users: int, num_items: int, seed: int = 0
) -> tuple[FeatureTable, FeatureTable]:
    """(users, items) feature tables with random ids; row 0 (padding) is all zeros, as prepared tables are."""
    gen = torch.Generator().manual_seed(seed)

    def ids(rows: int, cards: tuple[int, ...]) -> torch.Tensor:
        out = torch.stack([torch.randint(1, c + 1, (rows,), generator=gen) for c in cards], 1)
        return torch.cat([torch.zeros(1, len(cards), dtype=torch.long), out])

    tags = torch.randint(1, TAGS + 1, (num_items + 1, MAX_TAGS), generator=gen)
    tags *= torch.rand(num_items + 1, MAX_TAGS, generator=gen) < 0.6  # 0..3 tags per video, 0 = empty slot
    tags[0] = 0
    users = FeatureTable(names=[f"u{j}" for j in range(len(USER_CARDS))], ids=ids(num_users, USER_CARDS),
                         cardinalities=[c + 1 for c in USER_CARDS])  # fmt: skip
    items = FeatureTable(names=["video_type", "upload_type", "music_type"], ids=ids(num_items, ITEM_CARDS),
                         cardinalities=[c + 1 for c in ITEM_CARDS], tags=tags, tag_cardinality=TAGS + 1)  # fmt: skip
    return users, items


def synthetic_row_table(num_users: int, num_items: int, rows_per_user: int, seed: int = 0) -> RowTable:
    """A user-sorted row table: ``rows_per_user`` rows per user 1..U, uniform items 1..I, Pure's label rates.

    Every row is a train row and its own request; N = U · rows_per_user.
    """
    gen = torch.Generator().manual_seed(seed)
    n = num_users * rows_per_user
    user = torch.arange(1, num_users + 1).repeat_interleave(rows_per_user)
    pos = torch.arange(rows_per_user).repeat(num_users)
    labels = (torch.rand(n, 7, generator=gen) < torch.tensor(POSITIVE_RATE)).to(torch.uint8)
    item = torch.randint(1, num_items + 1, (n,), generator=gen)
    # Play time after a click: log-normal around 15 s, long views (label 5) at least 18 s; 0 without a click.
    play = torch.exp(torch.randn(n, generator=gen) * 0.8 + 2.7)
    play = torch.where(labels[:, 5] > 0, play.clamp(min=18.0), play.clamp(max=17.9)) * (labels[:, 0] > 0)
    return RowTable(item=item, user=user, labels=labels,
                    user_start=(user - 1) * rows_per_user, user_pos=pos, request_pos=pos.clone(),
                    split=torch.zeros(n, dtype=torch.int8), play_seconds=play)  # fmt: skip
