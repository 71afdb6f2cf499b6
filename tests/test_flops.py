"""The analytic FLOP counter (``recrl_cli.nets.flops``) behind the throughput bound: hand counts, closed
formulas per base, and an independent cross-check against torch's own matmul FLOP counter."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from recrl_cli.errors import ConfigError
from recrl_cli.nets.flops import forward_flops_per_sample, forward_macs_per_sample, train_flops_per_sample
from recrl_cli.nets.mtl import MTL_BASES, MTLConfig, build_base

CARDS = (2, 5, 11)
# The hand formulas count the id-only state (F·D inputs); the history encoder adds 2D inputs (tests/test_history.py).
SMALL = MTLConfig(embed_dim=4, bottom_dims=(8, 6), tower_dims=(5,), dropout=0.2, expert_num=4, history="off")
# Bases that multiply gate weights into expert outputs with a small bmm the counter leaves out by convention.
MIXING = {"omoe", "mmoe", "ple"}


def test_flops_of_sharedbottom_match_hand_count() -> None:
    cfg = MTLConfig(
        embed_dim=4, bottom_dims=(8, 6), tower_dims=(5,), dropout=0.2, expert_num=2, history="off"
    )
    model = build_base("sharedbottom", CARDS, 2, cfg).train()
    # input 3 fields · 4 = 12; bottom 12·8 + 8·6; two towers of 6·5 + 5·1; embeddings count 0
    macs = 12 * 8 + 8 * 6 + 2 * (6 * 5 + 5 * 1)
    assert forward_macs_per_sample(model) == macs
    assert forward_flops_per_sample(model) == 2 * macs
    assert train_flops_per_sample(model) == 6 * macs  # forward + input grad + weight grad
    assert model.training  # the counter restores the mode


def test_flops_of_batched_bases_match_formulas() -> None:
    i, d1, d2, tw, e, t = 12, 8, 6, 5, 4, 2
    tower = tw * d2 + tw
    expected = {
        "singletask": t * (i * d1 + d1 * d2 + tower),
        "omoe": e * (i * d1 + d1 * d2) + i * e + t * tower,
        "mmoe": e * (i * d1 + d1 * d2) + t * i * e + t * tower,
        # level 0: 3 groups × 2 experts, 2 task gates (→4), a shared gate (→6); level 1: no shared gate
        "ple": 6 * i * d1 + t * i * 4 + i * 6 + 6 * d1 * d2 + t * d1 * 4 + t * tower,
        "esmm": t * (i * d1 + d1 * d2) + t * tower,
        # transfer g (d·d) + V, K, Q on the 2 stacked items
        "aitm": t * (i * d1 + d1 * d2) + d2 * d2 + 3 * 2 * d2 * d2 + t * tower,
    }
    assert set(expected) | {"sharedbottom"} == set(MTL_BASES)
    for name, macs in expected.items():
        assert forward_macs_per_sample(build_base(name, CARDS, t, SMALL)) == macs, name


@pytest.mark.parametrize("name", list(MTL_BASES))
def test_counts_agree_with_torch_flop_counter(name: str) -> None:
    """torch's FlopCounterMode counts every mm/addmm/bmm/baddbmm that actually runs, forward and backward.

    At the reference widths: forward = our count, and forward + backward = 3× it (every matmul input
    descends from the learnable embedding, so the backward forms both the input and the weight gradient).
    Only MoE/PLE's gate-mixing bmm (M·E·d MACs per sample) is extra, well under 1 %.
    """
    torch.manual_seed(0)
    batch = 4
    model = build_base(name, CARDS, 2, MTLConfig())
    x = torch.stack([torch.randint(0, c, (batch,)) for c in CARDS], dim=1)
    with FlopCounterMode(display=False) as forward_only, torch.no_grad():
        model.eval()(x)
    with FlopCounterMode(display=False) as train_step:
        F.binary_cross_entropy_with_logits(model.train()(x), torch.ones(batch, 2)).backward()
    ours_fwd = batch * forward_flops_per_sample(model)
    ours_train = batch * train_flops_per_sample(model)
    if name in MIXING:
        assert ours_fwd < forward_only.get_total_flops() < 1.01 * ours_fwd
        assert ours_train < train_step.get_total_flops() < 1.01 * ours_train
    else:
        assert forward_only.get_total_flops() == ours_fwd
        assert train_step.get_total_flops() == ours_train


def test_flops_counter_needs_fields_without_embedding() -> None:
    with pytest.raises(ConfigError, match="num_fields"):
        forward_flops_per_sample(torch.nn.Linear(3, 2))
