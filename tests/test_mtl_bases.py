"""Contract tests of the MTL base networks, their layers, the registry and MTLConfig (FLOPs: test_flops.py)."""

from __future__ import annotations

import copy
import math
import platform
import sys

import pytest
import torch
import torch.nn.functional as F

from recrl_cli.algorithms.supervised import SupervisedMTL
from recrl_cli.config.schema import DataConfig, RunConfig, TrainConfig
from recrl_cli.data.tensors import PreparedData, SplitTensors
from recrl_cli.errors import ConfigError, RegistryError
from recrl_cli.nets.allocator import retain_freed_cpu_memory
from recrl_cli.nets.embedding_grad import DenseEmbeddingGrads
from recrl_cli.nets.layers import FeatureEmbedding, MLPBank, dropout_mask, mix_experts, relu_dropout
from recrl_cli.nets.mtl import MTL_BASES, BaseSpec, MTLConfig, build_base
from recrl_cli.nets.mtl.esmm import ESMM, product_logit

CPU = torch.device("cpu")
NAMES = ("singletask", "sharedbottom", "omoe", "mmoe", "ple", "esmm", "aitm")
CARDS = (2, 5, 11)  # includes a field with cardinality 2
SMALL = MTLConfig(embed_dim=4, bottom_dims=(8, 6), tower_dims=(5,), dropout=0.2, expert_num=4)


def ids(batch: int, cards=CARDS, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.stack([torch.randint(0, c, (batch,), generator=gen) for c in cards], dim=1)


def task_counts(name: str) -> tuple[int, ...]:
    return (2,) if name == "esmm" else (2, 3)


CASES = [(name, t) for name in NAMES for t in task_counts(name)]


# --- contract -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "tasks"), CASES)
@pytest.mark.parametrize("batch", [1, 7])
def test_every_base_returns_finite_float_logits(name: str, tasks: int, batch: int) -> None:
    torch.manual_seed(0)
    model = build_base(name, CARDS, tasks, SMALL)
    for mode in (True, False):
        model.train(mode)
        out = model(ids(batch))
        assert out.shape == (batch, tasks)
        assert out.dtype == torch.float32
        assert torch.isfinite(out).all()


@pytest.mark.parametrize(("name", "tasks"), CASES)
def test_one_adam_step_moves_every_parameter(name: str, tasks: int) -> None:
    torch.manual_seed(1)
    # 16 first-layer units: with 8, one of singletask's three nets starts with all its units dead on this batch
    # once the history widens the input, and then its rows get exactly zero gradient.
    cfg = MTLConfig(embed_dim=4, bottom_dims=(16, 6), tower_dims=(5,), dropout=0.0, expert_num=4)
    model = build_base(name, CARDS, tasks, cfg)
    x = ids(64, seed=1)
    x[0] = 0  # id 0 ("missing") of every field is a learnable row, not padding
    # The session history (on by default): 3 earlier items (field 0's ids) and their label codes 1..3.
    gen = torch.Generator().manual_seed(1)
    hist = torch.randint(0, CARDS[0], (64, 3), generator=gen)
    codes = torch.randint(1, 4, (64, 3), generator=gen)
    y = (torch.arange(64)[:, None] + torch.arange(tasks)[None]) % 2  # every task sees both classes
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    F.binary_cross_entropy_with_logits(model(torch.cat([x, hist, codes], 1)), y.float()).backward()
    opt.step()
    frozen = [n for n, p in model.named_parameters() if torch.equal(p.detach(), before[n])]
    assert not frozen
    # Every row that was looked up moved (including the id-0 rows), every other row did not.
    for module in model.modules():
        if isinstance(module, FeatureEmbedding):
            rows = torch.zeros(module.weight.shape[0], dtype=torch.bool)
            rows[(x + module.offsets).flatten()] = True
            rows[hist.flatten()] = True  # history items read field 0's rows
            moved = (module.weight.grad != 0).any(1)
            assert torch.equal(moved, rows)


@pytest.mark.parametrize("name", NAMES)
def test_eval_is_deterministic_and_train_uses_dropout(name: str) -> None:
    torch.manual_seed(2)
    model = build_base(name, CARDS, 2, SMALL)
    x = ids(32)
    model.eval()
    assert torch.equal(model(x), model(x))
    model.train()
    assert not torch.equal(model(x), model(x))


def test_singletask_shares_nothing() -> None:
    model = build_base("singletask", CARDS, 2, SMALL)
    embeddings = [m for m in model.modules() if isinstance(m, FeatureEmbedding)]
    assert len(embeddings) == 2 and embeddings[0].weight is not embeddings[1].weight
    model.eval()
    x = ids(5)
    base = model(x)
    with torch.no_grad():
        model.nets[1].embedding.weight.add_(1.0)  # task 1's network only
    after = model(x)
    assert torch.equal(after[:, 0], base[:, 0]) and not torch.equal(after[:, 1], base[:, 1])


# --- ESMM -----------------------------------------------------------------------------------------


def test_esmm_outputs_ctr_and_product_of_tower_probabilities() -> None:
    torch.manual_seed(3)
    model = build_base("esmm", CARDS, 2, SMALL).eval()
    x = ids(9)
    t = model.tower_logits(x)
    out = model(x)
    torch.testing.assert_close(out[:, 0], t[:, 0])
    torch.testing.assert_close(torch.sigmoid(out[:, 1]), torch.sigmoid(t[:, 0]) * torch.sigmoid(t[:, 1]))


@pytest.mark.parametrize(
    ("a", "b"), [(30.0, 30.0), (-30.0, -30.0), (30.0, -30.0), (-30.0, 30.0), (200.0, 200.0)]
)
def test_product_logit_is_finite_and_exact_at_extremes(a: float, b: float) -> None:
    t0 = torch.tensor([a], requires_grad=True)
    t1 = torch.tensor([b], requires_grad=True)
    logit = product_logit(t0, t1)
    logit.sum().backward()
    assert torch.isfinite(logit).all() and torch.isfinite(t0.grad).all() and torch.isfinite(t1.grad).all()
    # float64 reference: log p and log(1 - p) from the exact product.
    log_p = F.logsigmoid(torch.tensor(a, dtype=torch.float64)) + F.logsigmoid(
        torch.tensor(b, dtype=torch.float64)
    )
    expected = (log_p - torch.log(-torch.expm1(log_p))).item()
    if math.isfinite(expected) and abs(expected) < 80:
        assert logit.item() == pytest.approx(expected, rel=1e-5, abs=1e-5)


def test_product_logit_matches_naive_on_moderate_values() -> None:
    t0, t1 = torch.linspace(-6, 6, 25), torch.linspace(5, -7, 25)
    p = torch.sigmoid(t0.double()) * torch.sigmoid(t1.double())
    torch.testing.assert_close(product_logit(t0, t1).double(), torch.log(p / (1 - p)), rtol=1e-4, atol=1e-4)


def test_esmm_needs_exactly_two_tasks() -> None:
    with pytest.raises(ConfigError, match="exactly 2 tasks"):
        ESMM(CARDS, 3, SMALL)


# --- batched experts equal a naive per-expert loop ------------------------------------------------


def naive_bank(bank: MLPBank, x: torch.Tensor) -> torch.Tensor:
    """Loop over experts with plain matmuls: x [G, B, in] -> [E, B, out] (eval mode, no dropout)."""
    outs = []
    for e in range(bank.num_experts):
        h = x[e // bank.per_group]
        layers = bank.expert_layers(e)
        for i, (w, b) in enumerate(layers):
            h = h @ w + b
            if i < bank.num_hidden:
                h = torch.relu(h)
        outs.append(h)
    return torch.stack(outs)


@pytest.mark.parametrize(
    ("groups", "per_group", "hidden", "out_dim"),
    [(1, 4, (8, 6), None), (1, 3, (7,), None), (3, 2, (7,), None), (2, 1, (5, 3), 1)],
)
def test_mlp_bank_equals_naive_loop(groups: int, per_group: int, hidden: tuple, out_dim: int | None) -> None:
    torch.manual_seed(4)
    bank = MLPBank(groups, per_group, 10, hidden, dropout=0.3, out_dim=out_dim).eval()
    x = torch.randn(groups, 13, 10)
    torch.testing.assert_close(bank(x), naive_bank(bank, x))
    # A stride-0 expand of one shared input gives the same as a materialised copy.
    shared = torch.randn(13, 10)
    torch.testing.assert_close(
        bank(shared.expand(groups, 13, 10)), naive_bank(bank, shared.repeat(groups, 1, 1))
    )
    # The gradients agree too (the bank's output may be a strided view; autograd must undo it exactly).
    x.requires_grad_(True)
    probe = torch.randn(bank.num_experts, 13, bank.output_dim)
    wrt = [x, *bank.parameters()]
    got = torch.autograd.grad((bank(x) * probe).sum(), wrt)
    want = torch.autograd.grad((naive_bank(bank, x) * probe).sum(), wrt)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w)


def test_mix_experts_is_gate_weighted_sum() -> None:
    gates = torch.softmax(torch.randn(6, 3, 4), dim=-1)  # [B, M, E]
    experts = torch.randn(4, 6, 5)  # [E, B, d]
    expected = torch.stack([sum(gates[:, m, e, None] * experts[e] for e in range(4)) for m in range(3)])
    torch.testing.assert_close(mix_experts(gates, experts), expected)


def test_mmoe_equals_hand_wired_forward() -> None:
    torch.manual_seed(5)
    model = build_base("mmoe", CARDS, 2, SMALL).eval()
    x = ids(7)
    emb = model.embedding(x)
    experts = naive_bank(model.experts, emb.expand(1, *emb.shape))  # [E, B, d]
    logits = []
    for t in range(2):
        w = model.gates.weight[t * 4 : (t + 1) * 4]
        b = model.gates.bias[t * 4 : (t + 1) * 4]
        g = torch.softmax(emb @ w.T + b, dim=-1)
        mixed = sum(g[:, e, None] * experts[e] for e in range(4))
        h = mixed
        for i, (wt, bt) in enumerate(model.towers.expert_layers(t)):
            h = h @ wt + bt
            h = torch.relu(h) if i < model.towers.num_hidden else h
        logits.append(h[:, 0])
    torch.testing.assert_close(model(x), torch.stack(logits, 1))


def test_ple_equals_hand_wired_forward() -> None:
    torch.manual_seed(8)
    tasks, k = 3, 2
    model = build_base("ple", CARDS, tasks, SMALL).eval()
    x = ids(6)
    emb = model.embedding(x)
    feats = [emb] * (tasks + 1)  # T task features, then the shared one
    for level in model.levels:
        inputs = torch.stack(feats[:1] if level.first else feats)
        experts = naive_bank(level.experts, inputs)  # [(T+1)·k, B, d]: specific per task, then shared
        new = []
        for t in range(tasks):
            chosen = torch.cat([experts[t * k : (t + 1) * k], experts[tasks * k :]])
            g = torch.softmax(level.task_gates[t](feats[t]), dim=-1)
            new.append(sum(g[:, e, None] * chosen[e] for e in range(2 * k)))
        if level.shared_gate is not None:
            g = torch.softmax(level.shared_gate(feats[tasks]), dim=-1)
            new.append(sum(g[:, e, None] * experts[e] for e in range(len(experts))))
        feats = new
    assert len(feats) == tasks  # the last level has no shared output
    expected = naive_bank(model.towers, torch.stack(feats))[..., 0].T
    torch.testing.assert_close(model(x), expected)


# --- layers ---------------------------------------------------------------------------------------


def test_feature_embedding_offsets_and_bad_cardinalities() -> None:
    emb = FeatureEmbedding((2, 3), 4)
    out = emb(torch.tensor([[1, 2]])).view(2, 4)
    torch.testing.assert_close(out[0], emb.weight[1])
    torch.testing.assert_close(out[1], emb.weight[2 + 2])
    for bad in [(), (3, 0), (2.5,), (True,)]:
        with pytest.raises(ConfigError):
            FeatureEmbedding(bad, 4)


def test_dropout_mask_rate_scale_and_lanes() -> None:
    torch.manual_seed(6)
    m = dropout_mask((50_000, 4), 0.2, torch.float32, torch.device("cpu"))
    p_eff = round(0.2 * 2**15) / 2**15
    assert m.unique().tolist() == pytest.approx([0.0, 1 / (1 - p_eff)])
    drop = (m == 0).float().mean(0)  # each of the 4 int16 lanes of a 64-bit draw
    assert torch.allclose(drop, torch.full((4,), 0.2), atol=0.01)
    odd = dropout_mask((3, 7), 0.5, torch.float64, torch.device("cpu"))
    assert odd.shape == (3, 7) and odd.dtype == torch.float64


def test_relu_dropout_forward_and_gradient() -> None:
    torch.manual_seed(7)
    h = torch.randn(400, 300, requires_grad=True)
    out = relu_dropout(h, 0.25, training=True)
    positive = h > 0
    dropped = (out == 0) & positive
    assert dropped.sum() / positive.sum() == pytest.approx(0.25, abs=0.01)
    assert torch.all(out[~positive] == 0)
    out.sum().backward()
    torch.testing.assert_close(h.grad, (out != 0).float() * (1 / (1 - 0.25)), atol=1e-4, rtol=0)
    torch.testing.assert_close(relu_dropout(h, 0.25, training=False), torch.relu(h))


# --- registry and config --------------------------------------------------------------------------


def test_registry_lists_exactly_the_seven_bases() -> None:
    assert tuple(MTL_BASES) == NAMES
    for name, spec in MTL_BASES.items():
        assert isinstance(spec, BaseSpec) and spec.name == name and spec.summary


def test_unknown_base_raises_registry_error() -> None:
    with pytest.raises(RegistryError, match=r"unknown model 'x'; choose one of: singletask, sharedbottom"):
        build_base("x", CARDS, 2, SMALL)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"embed_dim": 0},
        {"embed_dim": 2.5},
        {"bottom_dims": ()},
        {"bottom_dims": (8, 0)},
        {"bottom_dims": "8"},
        {"tower_dims": (-1,)},
        {"dropout": 1.0},
        {"dropout": -0.1},
        {"dropout": "0.2"},
        {"expert_num": 1},
        {"expert_num": True},
    ],
)
def test_mtl_config_rejects_bad_values(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        MTLConfig(**kwargs)


def test_mtl_config_defaults_and_normalisation() -> None:
    cfg = MTLConfig()
    assert (cfg.embed_dim, cfg.bottom_dims, cfg.tower_dims, cfg.dropout, cfg.expert_num) == (
        128,
        (512, 256),
        (128, 64),
        0.2,
        8,
    )
    assert MTLConfig(bottom_dims=[4, 3], tower_dims=[]).bottom_dims == (4, 3)


def test_bases_reject_bad_task_counts_and_odd_ple_experts() -> None:
    with pytest.raises(ConfigError, match="odd"):
        build_base("ple", CARDS, 2, MTLConfig(expert_num=3))
    with pytest.raises(ConfigError, match="positive number of tasks"):
        build_base("mmoe", CARDS, 0, SMALL)


# --- the product's train step ---------------------------------------------------------------------


def small_prepared(rows: int = 64, tasks: int = 2) -> PreparedData:
    x = ids(rows, seed=9)
    y = (torch.arange(rows)[:, None] + torch.arange(tasks)[None]) % 2
    zeros = torch.zeros(rows, dtype=torch.long)
    split = SplitTensors(features=x, labels=y.float(), session_ids=zeros, user_ids=zeros, positions=zeros)
    manifest = {
        "tasks": [f"t{i}" for i in range(tasks)],
        "features": [{"name": f"f{i}", "cardinality": c} for i, c in enumerate(CARDS)],
    }
    return PreparedData(manifest=manifest, splits={"train": split})


@pytest.mark.parametrize("name", ["sharedbottom", "mmoe"])
def test_supervised_update_equals_reference_adam_step(name: str) -> None:
    """SupervisedMTL's fused Adam is the reference update: L2 weight decay, default betas/eps, mean BCE."""
    cfg = MTLConfig(embed_dim=4, bottom_dims=(8, 6), tower_dims=(5,), dropout=0.0, expert_num=4)
    train = TrainConfig(lr=0.01, weight_decay=0.1)  # a large decay, so its semantics show in the result
    data = small_prepared()
    torch.manual_seed(10)
    algo = SupervisedMTL(name, RunConfig(algo=name, data=DataConfig(), train=train, model=cfg), data, CPU)
    assert algo.optimizer.param_groups[0]["fused"]
    reference = copy.deepcopy(algo.model)
    for module in reference.modules():
        if isinstance(module, FeatureEmbedding):
            module.sparse_grad = False  # the plain dense backward
    ref_opt = torch.optim.Adam(reference.parameters(), lr=0.01, weight_decay=0.1, foreach=False, fused=False)
    split = data.splits["train"]
    for step in range(3):
        idx = torch.arange(step * 16, step * 16 + 32)
        algo.update(idx)
        ref_opt.zero_grad()
        F.binary_cross_entropy_with_logits(reference(split.features[idx]), split.labels[idx]).backward()
        ref_opt.step()
    for (key, got), want in zip(
        algo.model.state_dict().items(), reference.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6, msg=key)


def test_retain_freed_cpu_memory_is_a_safe_no_op_or_applies() -> None:
    applied = retain_freed_cpu_memory()
    assert isinstance(applied, bool)
    if sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc":
        assert applied
    x = torch.randn(1 << 20)
    torch.testing.assert_close(torch.relu(x) - torch.relu(-x), x)  # tensors still allocate and compute


@pytest.mark.parametrize("name", ["singletask", "ple"])
def test_dense_embedding_grads_equal_the_dense_backward_and_reuse_one_buffer(name: str) -> None:
    torch.manual_seed(11)
    model = build_base(name, CARDS, 2, SMALL).eval()  # eval: no dropout, both passes see the same net
    reference = copy.deepcopy(model)
    grads = DenseEmbeddingGrads(model)
    assert len(grads.embeddings) == (2 if name == "singletask" else 1)
    x = ids(40, seed=12)
    x[:5] = 0  # repeated ids: their row gradients must be summed
    buffers = None
    for _ in range(2):  # the second step reuses the first step's buffers
        model.zero_grad(set_to_none=True)
        model(x).square().sum().backward()
        assert all(e.weight.grad.is_sparse for e in grads.embeddings)
        grads.densify()
        ptrs = [e.weight.grad.data_ptr() for e in grads.embeddings]
        assert buffers is None or ptrs == buffers
        buffers = ptrs
    reference(x).square().sum().backward()
    for (key, got), want in zip(model.named_parameters(), reference.parameters(), strict=True):
        assert not got.grad.is_sparse
        torch.testing.assert_close(got.grad, want.grad, msg=key)
    # Without zero_grad the next backward accumulates into the dense buffer, as with dense gradients.
    model(x).square().sum().backward()
    grads.densify()
    reference(x).square().sum().backward()
    for got, want in zip(model.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(got.grad, want.grad)
