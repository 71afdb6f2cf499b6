"""The exploration-box terms of UnifiedRL (bound penalty d, Eq. 5; target decay φ), the batched critic ensemble
and the transition store, each against a naive per-element / per-member reference."""

import math

import pytest
import torch

from recrl_cli.errors import DataError
from recrl_cli.offline.batch import TransitionStore
from recrl_cli.offline.bounds import bound_penalty, target_decay
from recrl_cli.offline.nets import EnsembleQ


def naive_d(x, mu, lo, up, beta, continuous=False):
    """Eq. 5 per element with Python floats, summed over dims per row (the documented aggregation)."""
    rows = []
    for xr, mr, lr, ur in zip(x.tolist(), mu.tolist(), lo.tolist(), up.tolist(), strict=True):
        total = 0.0
        for xi, mi, li, ui in zip(xr, mr, lr, ur, strict=True):
            w = ui - li
            if xi > mi + ui:
                v = math.exp((xi - (mi + ui)) / (beta * w))
            elif xi < mi + li:
                v = math.exp(((mi + li) - xi) / (beta * w))
            else:  # inside or exactly on the edge
                v = 0.0 if not continuous else 1.0
            total += v - 1.0 if continuous else v
        rows.append(total)
    return torch.tensor(rows)


def naive_phi(x, mu, lo, up, zeta):
    rows = []
    for xr, mr, lr, ur in zip(x.tolist(), mu.tolist(), lo.tolist(), up.tolist(), strict=True):
        s = 0.0
        for xi, mi, li, ui in zip(xr, mr, lr, ur, strict=True):
            excess = max(xi - (mi + ui), 0.0) + max((mi + li) - xi, 0.0)
            s += excess / (zeta * (ui - li))
        rows.append(math.exp(-s))
    return torch.tensor(rows)


def box_cases():
    """Rows inside, above, below, exactly on both edges, and mixed dims, with per-row box widths. Values are
    dyadic (exact in float32 and float64) so that the edge rows sit exactly on the edge in both."""
    mu = torch.tensor([[0.0, 0.25, -0.5], [0.375, 0.375, 0.375], [-0.25, 0.0, 0.875], [0.125, -0.125, 0.0],
                       [0.5, 0.5, -0.5]])  # fmt: skip
    lo = torch.tensor([[-0.125] * 3, [-0.125] * 3, [-0.0625] * 3, [-0.25, -0.125, -0.0625], [-0.125] * 3])
    up = torch.tensor([[0.125] * 3, [0.125] * 3, [0.0625] * 3, [0.25, 0.125, 0.0625], [0.125] * 3])
    x = torch.stack([
        mu[0] + torch.tensor([0.0625, -0.0625, 0.0]),      # inside in every dim
        mu[1] + torch.tensor([0.375, 0.125, -0.125]),      # above in dim 0, on both edges in dims 1-2
        mu[2] + torch.tensor([-0.3125, 0.03125, 0.0625]),  # below in dim 0, upper edge in dim 2
        mu[3] + torch.tensor([0.5, -0.625, 0.09375]),      # above, below, above: three dims outside
        mu[4] + torch.tensor([0.1328125, 0.0, -0.1171875]),  # just above one edge, just inside the other
    ])  # fmt: skip
    return x, mu, lo, up


@pytest.mark.parametrize("continuous", [False, True])
def test_bound_penalty_matches_eq5_per_element_summed_over_dims(continuous):
    x, mu, lo, up = box_cases()
    got = bound_penalty(x, mu, lo, up, beta=0.3, continuous=continuous)
    torch.testing.assert_close(got, naive_d(x, mu, lo, up, 0.3, continuous), rtol=1e-5, atol=1e-6)
    assert got[0] == 0.0  # inside: no penalty
    if not continuous:
        assert got[1] == pytest.approx(math.exp(0.25 / 0.075), rel=1e-5)  # edges count as inside
        assert got[4] == pytest.approx(math.exp(0.0078125 / 0.075), rel=1e-5)  # the jump: ≈ 1 just outside


def test_bound_penalty_gradient_is_zero_inside_and_d_over_beta_w_outside():
    x, mu, lo, up = box_cases()
    x = x[:2].clone().requires_grad_(True)
    bound_penalty(x, mu[:2], lo[:2], up[:2], beta=0.3).sum().backward()
    assert torch.equal(x.grad[0], torch.zeros(3))
    d0 = math.exp(0.25 / 0.075)  # excess 0.25, β·w = 0.3 · 0.25
    assert x.grad[1, 0].item() == pytest.approx(d0 / 0.075, rel=1e-5)


def test_target_decay_is_one_inside_and_matches_the_proposal_formula():
    x, mu, lo, up = box_cases()
    got = target_decay(x, mu, lo, up, zeta=0.3)
    torch.testing.assert_close(got, naive_phi(x, mu, lo, up, 0.3), rtol=1e-5, atol=1e-7)
    assert got[0] == 1.0 and bool(((got > 0) & (got <= 1)).all())
    # with ζ = β, φ is 1 / Π d over the dims that are outside (the documented tie between the two scales)
    assert got[1].item() == pytest.approx(1.0 / bound_penalty(x, mu, lo, up, 0.3)[1].item(), rel=1e-5)


def naive_member(layers, x):
    for i, (w, b) in enumerate(layers):
        x = x @ w + b
        if i < len(layers) - 1:
            x = torch.relu(x)
    return x.squeeze(-1)


def test_ensemble_matches_a_loop_over_independent_members():
    torch.manual_seed(0)
    ens = EnsembleQ(5, 4, 3, (8, 6))
    s, a = torch.randn(7, 4), torch.randn(7, 3)
    q = ens(s, a)
    assert q.shape == (5, 7)
    x = torch.cat([s, a], -1)
    ref = torch.stack([naive_member(ens.member(e), x) for e in range(5)])
    torch.testing.assert_close(q, ref, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(q[0], q[1])  # members are initialised independently
    torch.testing.assert_close(ens(s, a, detach=True), q)


def transitions(n=6, s=3, a=2):
    mu = torch.zeros(n, a)
    return {"state": torch.arange(n * s, dtype=torch.float32).view(n, s), "action": torch.zeros(n, a),
            "reward": torch.arange(n, dtype=torch.float32)[:, None].repeat(1, 2), "next_state": torch.zeros(n, s),
            "done": torch.zeros(n, dtype=torch.bool), "mu_bp": mu, "next_mu_bp": mu,
            "lower": torch.full((n, a), -0.15), "upper": torch.full((n, a), 0.15)}  # fmt: skip


def test_store_samples_whole_rows_by_index_reproducibly():
    store = TransitionStore.from_tensors(transitions())
    assert (len(store), store.state_dim, store.action_dim, store.reward_dim) == (6, 3, 2, 2)
    b1 = store.sample(32, torch.Generator().manual_seed(3))
    b2 = store.sample(32, torch.Generator().manual_seed(3))
    assert torch.equal(b1.state, b2.state) and b1.done.dtype == torch.float32
    rows = (b1.state[:, 0] / 3).long()  # row i's state starts at 3i: every field comes from the same row
    assert torch.equal(b1.reward[:, 0], rows.float()) and len(set(rows.tolist())) > 1
    assert torch.equal(store.to("cpu").all().state, store.all().state)


@pytest.mark.parametrize(
    ("edit", "message"),
    [(lambda d: d.pop("mu_bp"), "lack the field"), (lambda d: d.update(extra=torch.zeros(6)), "unknown field"),
     (lambda d: d.update(done=torch.zeros(5)), "row count"), (lambda d: d.update(upper=torch.zeros(6, 3)), "width"),
     (lambda d: d.update(reward=torch.zeros(6)), "dimension"), (lambda d: d.update(lower=torch.ones(6, 2)), "lower > upper")],
)  # fmt: skip
def test_store_rejects_malformed_data_with_one_line_errors(edit, message):
    data = transitions()
    edit(data)
    with pytest.raises(DataError, match=message):
        TransitionStore.from_tensors(data)


def test_store_concat_keeps_rows_in_order_and_checks_widths():
    first, second = transitions(4), transitions(6)
    both = TransitionStore.concat([TransitionStore.from_tensors(first), TransitionStore.from_tensors(second)])
    assert len(both) == 10 and torch.equal(both.all().state[4:], second["state"])
    with pytest.raises(DataError, match="differ in"):
        TransitionStore.concat(
            [TransitionStore.from_tensors(transitions(a=3)), TransitionStore.from_tensors(first)]
        )
    with pytest.raises(DataError, match="no transition stores"):
        TransitionStore.concat([])


def test_store_rejects_a_non_positive_batch_size():
    with pytest.raises(DataError, match="batch size"):
        TransitionStore.from_tensors(transitions()).sample(0, torch.Generator())
