"""RMTL: the session MDP on a hand-written fixture, the critics and TD target against naive per-row references,
the polish weights, the faithful switches (each changes exactly what it claims), and small end-to-end runs through
``train_run`` (three stages, pretrained metrics, exact resume, critic transfer and its errors)."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from recrl_cli.algorithms.rmtl import RMTL, RMTLConfig, resolve_critics_source
from recrl_cli.algorithms.rmtl.config import SWITCHES, effective_switches
from recrl_cli.algorithms.rmtl.critics import CriticLearner, RowAdam, TaskCritics
from recrl_cli.algorithms.rmtl.mdp import (
    REWARD_CLIP,
    build_session_mdp,
    critic_cardinalities,
    critic_states,
    normalize_state_ids,
)
from recrl_cli.algorithms.rmtl.polish import mean_rmtl_weight, polish_weights, weighted_bce
from recrl_cli.algorithms.supervised import load_mtl_predictor
from recrl_cli.config.loading import resolve_config
from recrl_cli.data.prepare.retailrocket import RetailRocketPrepareParams, prepare_retailrocket
from recrl_cli.data.synth.retailrocket import write_retailrocket
from recrl_cli.data.tensors import load_prepared
from recrl_cli.errors import ConfigError, DataError
from recrl_cli.evaluation.evaluator import evaluate_split
from recrl_cli.pipeline import evaluate_saved, train_run
from recrl_cli.tracking.base import NullTracker, RecordingTracker
from recrl_cli.training.checkpoint import load_checkpoint, save_checkpoint
from recrl_cli.training.trainer import StopSignal, TrainingInterrupted

CPU = torch.device("cpu")

# ---- the session MDP on a hand-written fixture ----------------------------------------------------------------

# Three sessions: 5 (three rows), 7 (one row), 9 (two rows). T = 2 tasks, F = 2 feature fields.
SESSIONS = torch.tensor([5, 5, 5, 7, 9, 9])
POSITIONS = torch.tensor([0, 1, 2, 0, 0, 1])
FEATURES = torch.tensor([[1, 2], [3, 4], [5, 6], [7, 8], [9, 10], [11, 12]])
LABELS = torch.tensor([[1, 0], [0, 0], [1, 1], [0, 0], [1, 1], [1, 0]], dtype=torch.float32)
ACTIONS = torch.tensor([[0.8, 0.1], [0.3, 0.2], [0.6, 1.0], [0.5, 0.5], [0.0, 0.9], [0.9, 0.4]])


def test_mdp_transitions_rewards_and_done_on_three_sessions():
    mdp = build_session_mdp(SESSIONS, LABELS, ACTIONS)
    assert mdp.next_index.tolist() == [1, 2, 2, 3, 5, 5]  # the last row of a session points at itself
    assert mdp.done.tolist() == [0, 0, 1, 1, 0, 1]
    ln = math.log
    expected = [[ln(0.8), ln(0.9)], [ln(0.7), ln(0.8)], [ln(0.6), 0.0], [ln(0.5), ln(0.5)],
                [ln(REWARD_CLIP), ln(0.9)], [ln(0.9), ln(0.6)]]  # fmt: skip
    assert torch.allclose(mdp.rewards, torch.tensor(expected), atol=1e-6)
    assert torch.equal(mdp.actions, ACTIONS) and torch.equal(mdp.policy_actions, ACTIONS)


def test_critic_states_and_next_states_with_and_without_context():
    assert torch.equal(critic_states(FEATURES, LABELS, SESSIONS, POSITIONS, context=False), FEATURES)
    states = critic_states(FEATURES, LABELS, SESSIONS, POSITIONS, context=True)
    # context = (position, previous event's labels: 0 at a session start, else 1 + y0 + 2·y1)
    assert states.tolist() == [
        [1, 2, 0, 0],
        [3, 4, 1, 2],
        [5, 6, 2, 1],
        [7, 8, 0, 0],
        [9, 10, 0, 0],
        [11, 12, 1, 4],
    ]
    mdp = build_session_mdp(SESSIONS, LABELS, ACTIONS)
    assert states[mdp.next_index].tolist() == [[3, 4, 1, 2], [5, 6, 2, 1], [5, 6, 2, 1], [7, 8, 0, 0],
                                               [11, 12, 1, 4], [11, 12, 1, 4]]  # fmt: skip
    assert critic_cardinalities([20, 30], 2, context=True) == [20, 30, 32, 5]
    assert critic_states(FEATURES, LABELS, SESSIONS, torch.tensor([0, 1, 40, 0, 0, 1]), True)[2, 2] == 31


def test_mdp_refuses_sessions_that_are_not_contiguous():
    with pytest.raises(DataError, match="contiguous"):
        build_session_mdp(torch.tensor([1, 2, 1]), LABELS[:3], ACTIONS[:3])


def test_normalize_state_ids_zscores_truncates_and_clamps():
    ids = torch.tensor([[0, 0, 7], [0, 1, 7], [0, 2, 7], [10, 3, 7]])
    out = normalize_state_ids(ids, [11, 2, 8], num_fields=2)
    # column 0: mean 2.5, std 4.33 → z = (−0.58, −0.58, −0.58, 1.73) → (0, 0, 0, 1)
    # column 1: mean 1.5, std 1.118 → z = (−1.34, −0.45, 0.45, 1.34) → (−1, 0, 0, 1) → clamp to [0, 1]
    assert out.tolist() == [[0, 0, 7], [0, 0, 7], [0, 0, 7], [1, 1, 7]]  # context column 2 untouched


# ---- critics against naive per-row references ----------------------------------------------------------------

CARDS = [4, 3, 5]


def small_critics(seed: int = 0, dropout: float = 0.0, relu: bool = False) -> TaskCritics:
    torch.manual_seed(seed)
    return TaskCritics(
        CARDS, 2, embed_dim=4, bottom_dims=(6,), tower_dims=(5,), dropout=dropout, relu_output=relu
    )


def naive_q(critics: TaskCritics, k: int, ids: list[int], action: float) -> float:
    """Q_k(s, a) of one row, from the definition: concat(tables_k[ids], a·w + b) → Linear/ReLU … → −softplus."""
    vocab, offset, tokens = critics.vocab, 0, []
    for card, x in zip(CARDS, ids, strict=True):
        tokens.append(critics.embedding[k * vocab + offset + x])
        offset += card
    tokens.append(action * critics.action.weight[k, 0] + critics.action.bias[k, 0])
    h = torch.cat(tokens)
    for j, layer in enumerate(critics.layers):
        h = h @ layer.weight[k] + layer.bias[k, 0]
        if j < len(critics.layers) - 1:
            h = torch.relu(h)
    z = float(h[0].detach())
    return -max(z, 0.0) if critics.relu_output else -math.log1p(math.exp(z))


def random_batch(n: int, seed: int):
    gen = torch.Generator().manual_seed(seed)
    ids = torch.stack([torch.randint(0, c, (n,), generator=gen) for c in CARDS], dim=1)
    return ids, torch.rand(n, 2, generator=gen)


@pytest.mark.parametrize("relu", [False, True])
def test_batched_critics_match_the_naive_per_row_forward(relu):
    critics = small_critics(relu=relu)
    ids, actions = random_batch(7, seed=1)
    q = critics(ids, actions)
    naive = [[naive_q(critics, k, ids[i].tolist(), float(actions[i, k])) for k in range(2)] for i in range(7)]
    assert torch.allclose(q, torch.tensor(naive), atol=1e-5)
    assert bool((q <= 0).all())


def concat_forward(critics: TaskCritics, emb: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """The critic as defined (concatenated action token, no rank-1 shortcut): emb [T, B, F, D] → Q [B, T]."""
    h = torch.cat([emb.flatten(2), critics.action(actions.t().unsqueeze(-1))], dim=2)
    for j, layer in enumerate(critics.layers):
        h = layer(h) if j == len(critics.layers) - 1 else torch.relu(layer(h))
    return -F.softplus(h.squeeze(-1)).t()


def test_td_step_equals_torch_sparse_embedding_with_sparse_adam():
    """Row-wise leaf gradients + RowAdam + rank-1 action term == nn.Embedding(sparse) + SparseAdam + concat."""
    critics = small_critics()
    reference = copy.deepcopy(critics)
    table = torch.nn.Parameter(reference.embedding.data.clone())
    dense_opt = torch.optim.Adam(reference.dense_parameters(), lr=0.01, fused=True)
    sparse_opt = torch.optim.SparseAdam([table], lr=0.01)
    learner = CriticLearner(critics, lr=0.01, gamma=0.0, tau=0.5, target_update_every=1)  # γ = 0: y = r
    for step in range(4):
        ids, actions = random_batch(16, seed=10 + step)
        rewards = -torch.rand(16, 2, generator=torch.Generator().manual_seed(step))
        learner.step(ids, actions, rewards, torch.zeros(16), ids, actions)
        q = concat_forward(reference, F.embedding(reference.rows(ids), table, sparse=True), actions)
        loss = (q - rewards).square().mean(0).sum()
        dense_opt.zero_grad()
        sparse_opt.zero_grad()
        loss.backward()
        dense_opt.step()
        sparse_opt.step()
    assert torch.allclose(critics.embedding, table, atol=1e-6)
    for ours, theirs in zip(critics.dense_parameters(), reference.dense_parameters(), strict=True):
        assert torch.allclose(ours, theirs, atol=1e-6)


def test_row_adam_is_sparse_adam():
    table = torch.randn(10, 3)
    param = torch.nn.Parameter(table.clone())
    ours, theirs = RowAdam(table, lr=0.1), torch.optim.SparseAdam([param], lr=0.1)
    for rows in ([1, 4, 7], [4, 5], [0, 1, 9]):
        idx = torch.tensor(rows)
        grad = torch.randn(len(rows), 3)
        ours.step(idx, grad)
        param.grad = torch.sparse_coo_tensor(idx.unsqueeze(0), grad, (10, 3), check_invariants=True)
        theirs.step()
    assert torch.allclose(table, param.data, atol=1e-6)


def test_td_target_and_lazy_soft_update_match_a_dense_naive_reference():
    critics = small_critics(seed=3)
    gamma, tau = 0.9, 0.3
    learner = CriticLearner(critics, lr=0.05, gamma=gamma, tau=tau, target_update_every=2)
    dense_target = copy.deepcopy(critics)  # soft-updated on EVERY parameter, the naive way
    for step in range(8):  # ends on a soft update: every table row's target is then stale until synced
        ids, actions = random_batch(8, seed=20 + step)
        nxt_ids, nxt_actions = random_batch(8, seed=40 + step)
        learner.step(
            ids, actions, -torch.rand(8, 2), (torch.arange(8) % 3 == 0).float(), nxt_ids, nxt_actions
        )
        if learner.steps % 2 == 0:
            with torch.no_grad():
                for t, o in zip(dense_target.parameters(), critics.parameters(), strict=True):
                    t.copy_(tau * o + (1 - tau) * t)
    rewards, done = -torch.rand(6, 2), torch.tensor([0.0, 1.0, 0.0, 0.0, 1.0, 0.0])
    nxt_ids, nxt_actions = random_batch(6, seed=99)
    y = learner.td_target(rewards, done, nxt_ids, nxt_actions)
    naive = [[float(rewards[i, k]) + gamma * (1 - float(done[i]))
              * naive_q(dense_target, k, nxt_ids[i].tolist(), float(nxt_actions[i, k]))
              for k in range(2)] for i in range(6)]  # fmt: skip
    assert torch.allclose(y, torch.tensor(naive), atol=1e-5)
    for ours, theirs in zip(learner.synced_target().parameters(), dense_target.parameters(), strict=True):
        assert torch.allclose(ours, theirs, atol=1e-6)


# ---- polish weights and loss against naive per-row references ------------------------------------------------


def naive_weight(weighting: str, y: float, q: float, lam: float, cw: float, mean_w: float) -> float:
    return {"rmtl": 1 - lam * q, "wl": 1 - lam * y * q, "nlc": -q, "cw": cw, "bce-continue": 1.0,
            "mean-weight": mean_w}[weighting]  # fmt: skip


@pytest.mark.parametrize("weighting", ["rmtl", "cw", "wl", "nlc", "bce-continue", "mean-weight"])
def test_polish_weights_and_loss_match_naive_per_row(weighting):
    gen = torch.Generator().manual_seed(5)
    labels = (torch.rand(9, 2, generator=gen) < 0.4).float()
    q = -3 * torch.rand(9, 2, generator=gen)
    logits = torch.randn(9, 2, generator=gen)
    lam, cw = 0.7, 0.5
    mean_w = mean_rmtl_weight(q, lam)
    w = polish_weights(weighting, labels, q, lam=lam, cw_weight=cw, mean_weight=mean_w)
    naive_w = [[naive_weight(weighting, float(labels[i, k]), float(q[i, k]), lam, cw,
                             sum(1 - lam * float(q[j, k]) for j in range(9)) / 9) for k in range(2)]
               for i in range(9)]  # fmt: skip
    assert torch.allclose(w, torch.tensor(naive_w), atol=1e-5)
    p = torch.sigmoid(logits)
    naive_loss = sum(naive_w[i][k] * -(float(labels[i, k]) * math.log(p[i, k]) + (1 - float(labels[i, k]))
                     * math.log(1 - p[i, k])) for i in range(9) for k in range(2)) / (9 * 2)  # fmt: skip
    assert float(weighted_bce(logits, labels, w)) == pytest.approx(naive_loss, rel=1e-5)


def test_polish_loss_stops_the_gradient_at_the_weights():
    logits = torch.randn(4, 2, requires_grad=True)
    q = torch.randn(4, 2, requires_grad=True)
    weighted_bce(logits, torch.ones(4, 2), polish_weights("rmtl", torch.ones(4, 2), q)).backward()
    assert q.grad is None and logits.grad is not None


# ---- tiny prepared data and RMTL instances -------------------------------------------------------------------

TINY = {
    "train.batch_size": 256, "train.checkpoint_every": 0, "train.eval_batch_size": 4096,
    "model.base": "mmoe", "model.embed_dim": 8, "model.bottom_dims": (16,), "model.tower_dims": (8,),
    "model.expert_num": 2, "model.critic_embed_dim": 8, "model.critic_bottom_dims": (16,),
    "model.critic_tower_dims": (8,), "model.critic_batch_size": 256, "model.pretrain_epochs": 2,
    "model.critic_epochs": 2, "model.polish_epochs": 2,
}  # fmt: skip


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("rmtl-data")
    write_retailrocket(root / "raw", num_events=4_000, seed=3)
    prepare_retailrocket(root / "raw", root / "out", RetailRocketPrepareParams(min_count=2))
    return root / "out"


@pytest.fixture(scope="module")
def data(prepared):
    return load_prepared(prepared, CPU)


def tiny_cfg(prepared: Path, **model):
    options = {**TINY, "data.prepared_dir": str(prepared), **{f"model.{k}": v for k, v in model.items()}}
    return resolve_config("rmtl", RMTLConfig, options=options)


def build(prepared: Path, data, seed: int = 0, **model) -> RMTL:
    torch.manual_seed(seed)
    return RMTL(tiny_cfg(prepared, **model), data, CPU)


def test_faithful_preset_turns_every_switch_on_and_the_context_off():
    assert effective_switches(RMTLConfig(faithful=True)) == {
        **dict.fromkeys(SWITCHES, True),
        "context": False,
    }
    assert effective_switches(RMTLConfig()) == {**dict.fromkeys(SWITCHES, False), "context": True}
    for name in SWITCHES:
        on = effective_switches(RMTLConfig(**{name: True}))
        assert {k for k, v in on.items() if v} == {name, "context"}


def observe(algo: RMTL) -> dict[str, object]:
    """Everything a faithful switch may change, each as a comparable value (the switches' whole surface)."""
    algo.critics.eval()
    algo._prepare_critics()
    mdp, idx = algo._mdp, torch.arange(0, 600, 7)
    captured = {}
    algo.learner.step = lambda *args, **kwargs: captured.update(args=args) or {}
    algo.critic_update(idx)
    td_ids = (captured["args"][0], captured["args"][4])
    online = algo.critics
    first_critic_equal = all(torch.equal(p[0], p[1]) for p in online.dense_parameters())
    learner = algo._new_learner()  # a fresh target == online; then move the online copy away from it
    with torch.no_grad():
        gen = torch.Generator().manual_seed(0)
        for p in online.dense_parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=gen))
    torch.manual_seed(1)
    states, rewards = algo.critic_states(), -torch.rand(len(idx), 2, generator=gen)
    td = learner.td_target(rewards, mdp.done[idx], states[idx], mdp.policy_actions[idx])
    probs = algo.predict(algo.train_split.features[idx])
    q_a, q_b = algo._critic_values(idx, probs), algo._critic_values(idx, probs)
    stages = {s.name: s for s in algo.stages()}
    return {
        "td_ids": td_ids,
        "mdp_actions": mdp.actions,
        "mdp_rewards": mdp.rewards,
        "mdp_transitions": (mdp.next_index, mdp.done, mdp.policy_actions),
        "critics_start_identical": first_critic_equal,
        "td_target": td,
        "polish_q": q_a,
        "polish_q_stochastic": not torch.equal(q_a, q_b),
        "val_split": algo._split("val"),
        "test_split": algo._split("test"),
        "shuffle": (stages["pretrain"].shuffle, stages["critics"].shuffle, stages["polish"].shuffle),
        "polish_monitor": stages["polish"].monitor,
    }


def differs(a: object, b: object) -> bool:
    if isinstance(a, torch.Tensor):
        return a.shape != b.shape or not torch.allclose(a.double(), b.double(), atol=1e-7)
    if isinstance(a, tuple):
        return any(differs(x, y) for x, y in zip(a, b, strict=True))
    return a != b


CLAIMS = {
    "normalize_state_ids": {"td_ids"},
    "action_affine_mismatch": {"mdp_rewards"},
    "random_actions": {"mdp_actions", "mdp_rewards"},
    "critic_dropout_at_polish": {"polish_q", "polish_q_stochastic"},
    "identical_critic_init": {"critics_start_identical", "td_target", "polish_q"},
    "twin_min_same_critic": {"td_target"},
    "tiny_target_noise": {"td_target"},
    "relu_critic_output": {"td_target", "polish_q"},
    "swap_val_test": {"val_split", "test_split"},
    "unshuffled": {"shuffle"},
    "polish_forgets_pretrained": {"polish_monitor"},
}


def test_each_faithful_switch_changes_exactly_what_it_claims(prepared, data):
    assert set(CLAIMS) == set(SWITCHES)
    reference = observe(build(prepared, data, context=False))
    assert reference["shuffle"] == (True, True, True) and reference["val_split"] == "val"
    for switch, claimed in CLAIMS.items():
        seen = observe(build(prepared, data, context=False, **{switch: True}))
        changed = {key for key in reference if differs(reference[key], seen[key])}
        assert changed == claimed, switch


def test_transferred_or_critic_free_runs_skip_the_critic_stage(prepared, data):
    for weighting in ("cw", "bce-continue"):
        algo = build(prepared, data, weighting=weighting)
        assert [s.name for s in algo.stages()] == ["pretrain", "polish"] and algo.critics is None


@pytest.mark.parametrize("weighting", ["rmtl", "cw", "wl", "nlc", "bce-continue", "mean-weight"])
def test_every_weighting_polishes(prepared, data, weighting):
    algo = build(prepared, data, weighting=weighting)
    before = [p.detach().clone() for p in algo.base.parameters()]
    algo._prepare_polish()
    out = algo.polish_update(torch.arange(256))
    assert math.isfinite(out["loss"]) and out["weight_mean"] > 0
    assert any(not torch.equal(a, b) for a, b in zip(before, algo.base.parameters(), strict=True))


def test_polish_keeps_the_pretrained_model_unless_an_epoch_beats_it(prepared, data):
    algo = build(prepared, data)
    # The comparison with the pretrained model alone (the calibration guard: tests/test_calibration.py).
    algo.guard.enabled = False
    algo._after_pretrain()
    pretrained = copy.deepcopy(algo.base.state_dict())
    algo.polish_best = 2.0  # no AUC can beat it
    algo.polish_update(torch.arange(256))
    assert math.isnan(algo._validate_polish()["improved/mean/auc"])
    algo._after_polish()
    assert all(torch.equal(v, pretrained[k]) for k, v in algo.base.state_dict().items())
    algo.polish_best = -math.inf
    assert algo._validate_polish()["improved/mean/auc"] > 0 and algo.polish_improved


def test_a_logloss_monitor_makes_the_polish_keep_epochs_that_lower_it(prepared, data):
    options = {**TINY, "data.prepared_dir": str(prepared), "train.monitor": "mean/s_logloss"}
    torch.manual_seed(0)
    algo = RMTL(resolve_config("rmtl", RMTLConfig, options=options), data, CPU)
    algo.guard.enabled = False
    algo._after_pretrain()
    pretrained = algo.pretrained["metrics"]["val"]["mean/s_logloss"]
    assert algo.polish_best == -pretrained  # a score: higher is better, so the logloss is negated
    algo.polish_best = -(
        pretrained - 1.0
    )  # as if an epoch had reached a logloss 1.0 lower: the same weights do not
    assert math.isnan(algo._validate_polish()["improved/mean/s_logloss"]) and not algo.polish_improved
    algo.polish_best = -(pretrained + 1.0)  # a logloss 1.0 higher: the same weights beat it
    assert algo._validate_polish()["improved/mean/s_logloss"] == pytest.approx(pretrained)
    assert algo.polish_improved
    stages = {s.name: s for s in algo.stages()}
    assert (
        stages["pretrain"].monitor == "mean/s_logloss"
        and stages["polish"].monitor == "improved/mean/s_logloss"
    )


def test_swapped_splits_evaluate_the_other_split(prepared, data):
    algo = build(prepared, data, swap_val_test=True)
    direct = evaluate_split(algo.predict, data.splits["test"], data.tasks)
    assert algo.evaluate("val") == pytest.approx(direct, nan_ok=True)


# ---- end to end through train_run ------------------------------------------------------------------------------


def run(prepared: Path, root: Path, tracker=None, stop=None, progress=None, resume=False, **model):
    return train_run(tiny_cfg(prepared, **model), tracker or NullTracker(), experiment="rmtl-test",
                     runs_root=root, stop=stop, progress=progress, resume=resume)  # fmt: skip


@pytest.fixture(scope="module")
def finished(prepared, tmp_path_factory):
    tracker = RecordingTracker()
    result = run(prepared, tmp_path_factory.mktemp("runs"), tracker)
    return result, tracker


def test_end_to_end_runs_three_stages_and_reports_the_pretrained_model(finished, prepared):
    result, tracker = finished
    assert [h["stage"] for h in result.history] == ["pretrain"] * 2 + ["critics"] * 2 + ["polish"] * 2
    assert all(math.isfinite(v) for k, v in result.metrics.items() if "/pay/" not in k)  # pay AUC may be nan
    finals = {k for k in result.metrics if k.split("/")[0] in ("val", "test")}
    assert {f"pretrained/{k}" for k in finals} == {k for k in result.metrics if k.startswith("pretrained/")}
    assert "test/click/auc" in finals and "test/click/s_logloss" in finals
    logged = tracker.runs[result.run_id].metrics
    assert "eval/pretrained/test/click/auc" in logged and "train/critics/td_loss" in logged
    saved = load_checkpoint(result.run_dir / "model.pt")
    again = evaluate_saved(saved, prepared_dir=prepared, split="test", device_name="cpu")
    assert again["click/auc"] == pytest.approx(result.metrics["test/click/auc"])
    # The model MLflow logs (PyTorch flavour): the polished base as ids [B, F] -> probabilities [B, T].
    (model,) = tracker.runs[result.run_id].models
    assert model.name == f"rmtl-{saved['exported']['base']}" and model.metadata["tasks"] == ["click", "pay"]
    rows = model.input_example
    predict = load_mtl_predictor(saved["exported"], torch.device("cpu"))
    assert torch.allclose(model.model(rows), predict(rows), atol=1e-6)
    ((dataset, context),) = tracker.runs[result.run_id].datasets
    assert context == "training" and dataset.source == prepared.resolve().as_posix()


def test_interrupted_and_resumed_run_gives_identical_metrics(finished, prepared, tmp_path):
    reference, _ = finished
    stop = StopSignal()

    def progress(desc: str, batch: int, total: int, status: str = "") -> None:
        stop.requested = desc.startswith("critics · epoch 2/") and batch == 3

    with pytest.raises(TrainingInterrupted):
        run(prepared, tmp_path, stop=stop, progress=progress)
    resumed = run(prepared, tmp_path, resume=True)
    assert resumed.resumed and resumed.metrics == reference.metrics


def test_critic_transfer_loads_saved_critics_and_skips_the_critic_stage(finished, prepared, tmp_path):
    source, tracker = finished
    model_file = resolve_critics_source(
        source.run_id, tracker, cache_dir=tmp_path / "cache"
    )  # an MLflow run id
    assert resolve_critics_source(str(source.run_dir), tracker) == source.run_dir / "model.pt"
    result = run(prepared, tmp_path / "runs", base="sharedbottom", critics=str(model_file), polish_epochs=1)
    assert [h["stage"] for h in result.history] == ["pretrain", "pretrain", "polish"]
    theirs = load_checkpoint(source.run_dir / "model.pt")["exported"]["critics"]["weights"]
    ours = load_checkpoint(result.run_dir / "model.pt")["exported"]["critics"]["weights"]
    assert all(torch.equal(theirs[k], ours[k]) for k in theirs)


def test_incompatible_or_missing_critics_are_one_line_config_errors(finished, prepared, data, tmp_path):
    source, _ = finished
    saved = load_checkpoint(source.run_dir / "model.pt")
    saved["exported"]["critics"]["arch"]["cardinalities"][0] += 1
    save_checkpoint(tmp_path / "bad.pt", saved)
    with pytest.raises(ConfigError, match="'item' has") as info:
        build(prepared, data, critics=str(tmp_path / "bad.pt"))
    assert "\n" not in str(info.value)
    saved["exported"]["critics"] = None
    save_checkpoint(tmp_path / "none.pt", saved)
    with pytest.raises(ConfigError, match="holds no RMTL critics"):
        build(prepared, data, critics=str(tmp_path / "none.pt"))
    with pytest.raises(ConfigError, match="no model file"):
        build(prepared, data, critics=str(tmp_path / "missing.pt"))
    with pytest.raises(ConfigError, match="no model file"):
        resolve_critics_source("nowhere/model.pt", NullTracker())


@pytest.mark.parametrize("base", ["singletask", "sharedbottom", "omoe", "mmoe", "ple", "esmm", "aitm"])
def test_every_base_can_be_the_actor_and_seeds_the_critic_tables(prepared, data, base):
    algo = build(prepared, data, base=base)
    algo._prepare_critics()
    actor_tables = [m.weight for m in algo.base.modules() if type(m).__name__ == "FeatureEmbedding"]
    vocab, rows = algo.critics.vocab, actor_tables[0].shape[0]
    for k in range(2):  # singletask: critic k starts from task k's own table
        source = actor_tables[k if len(actor_tables) > 1 else 0]
        assert torch.equal(algo.critics.embedding[k * vocab : k * vocab + rows], source)
    assert torch.equal(algo.learner.synced_target().embedding, algo.critics.embedding)  # targets restarted
    assert math.isfinite(algo.critic_update(torch.arange(256))["td_loss"])
    assert math.isfinite(algo.polish_update(torch.arange(256))["loss"])
