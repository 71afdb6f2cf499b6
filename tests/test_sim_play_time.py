"""The simulator's play-time head: bins, sampling rule, loss, and the env's sampled play time."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from recrl_cli.config.loading import build_section
from recrl_cli.errors import ConfigError
from recrl_cli.sim.config import SimulatorConfig
from recrl_cli.sim.play_time import (
    CLICK,
    LONG_VIEW,
    click_play_expectations,
    expected_seconds,
    play_bins,
    play_metrics,
    play_time_loss,
    prob_at_least,
    sample_play_seconds,
)

EDGES = torch.tensor([1.0, 3.0, 7.0, 10.0, 18.0, 30.0, 60.0])


def test_bins_are_half_open_and_the_last_is_open():
    seconds = torch.tensor([0.0, 0.99, 1.0, 9.99, 10.0, 17.9, 18.0, 59.0, 60.0, 5000.0])
    assert play_bins(seconds, EDGES).tolist() == [0, 0, 1, 3, 4, 4, 5, 6, 7, 7]


def test_expected_seconds_is_the_mean_of_the_sampler_and_the_tail_a_naive_sum():
    """E[play | click] must be what the env draws: the open last bin's e_M·(1 + Exp(1)) has mean 2·e_M
    (the middle of [e_M, 2·e_M] once made the fusion 'watch' target 1/6 short of the sampler on long plays)."""
    logits = torch.randn(5, len(EDGES) + 1, generator=torch.Generator().manual_seed(0))
    logits[:, -1] += 2.0  # weight on the open last bin, where the two means differ
    lower = [0.0, *EDGES.tolist()]
    draws = 40_000
    gen = torch.Generator().manual_seed(3)
    for row in range(5):
        p = F.softmax(logits[row], -1).tolist()
        tail = sum(pi for pi, lo in zip(p, lower, strict=True) if lo >= 10.0)
        # responses with click and long view drawn as the sampler reads them, 18 s being an edge: both sides
        responses = torch.zeros(draws, 1, 7)
        responses[:, 0, CLICK] = 1.0
        play = sample_play_seconds(logits[row].expand(draws, 1, -1), responses, EDGES, gen)[:, 0]
        short_mean = play.mean().item()
        responses[:, 0, LONG_VIEW] = 1.0
        long_mean = sample_play_seconds(logits[row].expand(draws, 1, -1), responses, EDGES, gen)[:, 0].mean()
        p18 = sum(pi for pi, lo in zip(p, lower, strict=True) if lo >= 18.0)
        mixed = p18 * long_mean.item() + (1 - p18) * short_mean  # long view drawn with P(play >= 18 s)
        se = 5 * 120.0 / draws**0.5  # 5 standard errors (play sd < 120 s here)
        assert expected_seconds(logits[row], EDGES).item() == pytest.approx(mixed, abs=se)
        assert prob_at_least(logits[row], EDGES, 10.0).item() == pytest.approx(tail, rel=1e-5)


def test_loss_counts_only_clicked_rows_with_a_known_play_time():
    logits = torch.randn(4, len(EDGES) + 1, requires_grad=True)
    seconds = torch.tensor([5.0, float("nan"), 20.0, 40.0])
    clicked = torch.tensor([True, True, False, True])
    want = F.cross_entropy(logits[[0, 3]], torch.tensor([2, 6]))
    assert play_time_loss(logits, seconds, clicked, EDGES).item() == pytest.approx(want.item())
    nothing = play_time_loss(logits, seconds, torch.zeros(4, dtype=torch.bool), EDGES)
    assert nothing.item() == 0.0 and nothing.requires_grad  # a batch without clicks still backpropagates


def test_sampling_follows_the_bins_and_stays_consistent_with_click_and_long_view():
    n = 200_000
    logits = torch.zeros(n, 1, len(EDGES) + 1)  # uniform over the 8 bins
    responses = torch.zeros(n, 1, 7)
    responses[: n // 2, 0, 0] = 1.0  # first half clicked
    responses[: n // 4, 0, LONG_VIEW] = 1.0  # first quarter: clicked with a long view
    gen = torch.Generator().manual_seed(0)
    play = sample_play_seconds(logits, responses, EDGES, gen)[:, 0]
    assert torch.all(play[n // 2 :] == 0)  # no click -> no play
    long, short = play[: n // 4], play[n // 4 : n // 2]
    assert torch.all(long >= 18.0) and torch.all((short >= 0) & (short < 18.0))
    # Uniform over the 5 bins below 18 s -> each holds 1/5 of the short plays; inside [3, 7) seconds are uniform.
    share = torch.bincount(play_bins(short, EDGES), minlength=8)[:5].float() / len(short)
    assert torch.allclose(share, torch.full((5,), 0.2), atol=0.01)
    mid = short[(short >= 3) & (short < 7)]
    assert mid.mean().item() == pytest.approx(5.0, abs=0.05)
    # The open last bin [60, inf) draws 60·(1 + Exp(1)): mean 120.
    tail = long[long >= 60]
    assert tail.mean().item() == pytest.approx(120.0, rel=0.03) and tail.min() >= 60


@pytest.mark.parametrize(
    "edges", [EDGES, torch.tensor([2.0, 12.0, 40.0])], ids=["18 s an edge", "no 18 s edge"]
)
def test_click_play_expectations_match_the_sampler(edges):
    """The closed form against draws of the env's own sampler (responses independent, as the env draws them):
    mean play and share of plays > 10 s among the clicked draws, within 5 standard errors."""
    gen = torch.Generator().manual_seed(0)
    items, draws = 4, 50_000
    logits = torch.randn(items, len(edges) + 1, generator=gen) * 1.5
    probs = torch.rand(items, 7, generator=gen) * 0.8 + 0.1
    responses = (torch.rand(draws, items, 7, generator=gen) < probs).float()
    play = sample_play_seconds(logits.expand(draws, -1, -1), responses, edges, gen)
    mean, valid = click_play_expectations(logits, edges, probs, 10.0)
    for i in range(items):
        seconds = play[responses[:, i, 0] > 0, i]
        se = seconds.std() / math.sqrt(len(seconds))
        assert abs(seconds.mean() - mean[i]) < 5 * se, (i, seconds.mean(), mean[i])
        share = (seconds > 10.0).float().mean()
        assert abs(share - valid[i]) < 5 * math.sqrt(valid[i] * (1 - valid[i]) / len(seconds)) + 1e-3


def test_sampling_falls_back_to_every_bin_when_the_long_view_side_has_no_mass():
    logits = torch.full((1000, 1, len(EDGES) + 1), -math.inf)
    logits[..., 0] = 0.0  # all mass in [0, 1) s, yet long_view = 1
    responses = torch.zeros(1000, 1, 7)
    responses[..., CLICK] = responses[..., LONG_VIEW] = 1.0
    play = sample_play_seconds(logits, responses, EDGES, torch.Generator().manual_seed(1))
    assert torch.all((play >= 0) & (play < 1))


def test_metrics_on_a_hand_made_case():
    logits = torch.zeros(3, len(EDGES) + 1)
    logits[0, 6] = logits[1, 1] = 10.0  # row 0 surely in [30, 60), row 1 in [1, 3)
    click = torch.tensor([0.9, 0.8, 0.1])
    seconds = torch.tensor([45.0, 2.0, 0.0])
    clicked = torch.tensor([True, True, False])
    out = play_metrics(logits, click, seconds, clicked, EDGES)
    assert out["play/mae_seconds"] == pytest.approx(0.0, abs=0.01)
    assert out["valid_play/auc"] == pytest.approx(1.0)  # only row 0 plays > 10 s, and it scores highest


def test_edges_are_validated_and_an_empty_tuple_removes_the_head():
    with pytest.raises(ConfigError, match="ascending"):
        SimulatorConfig(play_time_edges=(3.0, 1.0))
    with pytest.raises(ConfigError, match="ascending"):
        SimulatorConfig(play_time_edges=(0.0, 1.0))
    assert build_section(SimulatorConfig, {"play_time_edges": ()}, "model").play_time_edges == ()


def test_env_samples_play_time_and_a_headless_model_gives_none():
    from recrl_cli.sim.config import EnvConfig
    from recrl_cli.sim.environment import WholeSessionEnv
    from recrl_cli.sim.response_model import UserResponseModel
    from recrl_cli.sim.synthetic import synthetic_feature_tables, synthetic_row_table

    users, items = synthetic_feature_tables(20, 30, seed=0)
    table = synthetic_row_table(20, 12, rows_per_user=15, seed=0)
    results = {}
    for edges in ((1.0, 10.0, 18.0, 60.0), ()):
        cfg = SimulatorConfig(enc_dim=8, user_latent=4, item_latent=4, n_heads=2, ff_dim=8, state_hidden=16,
                              history_length=10, play_time_edges=edges)  # fmt: skip
        torch.manual_seed(0)
        model = UserResponseModel(cfg, users, items)
        env = WholeSessionEnv(model, EnvConfig(batch_users=4, slate_size=3, seed=0), table,
                              torch.arange(table.num_rows), torch.ones(7))  # fmt: skip
        results[edges] = env.step(torch.randint(0, 30, (4, 3)))
    with_head = results[(1.0, 10.0, 18.0, 60.0)]
    assert with_head.play_seconds is not None and with_head.play_seconds.shape == (4, 3)
    clicked = with_head.responses[..., 0] > 0
    assert torch.all(with_head.play_seconds[~clicked] == 0) and torch.all(with_head.play_seconds >= 0)
    assert results[()].play_seconds is None
