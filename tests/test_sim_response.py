"""The KuaiSim-style user response model and ``recrl train simulator``: shapes, equivalence of the transformer
with PyTorch's reference layer, every faithful switch changing exactly what hac_kuaisim.md §8 says (and
nothing else), the loss and reg against hand-written formulas, export round trips, and training that
improves validation AUC on tiny synthetic KuaiRand."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from recrl_cli.config.schema import DataConfig, RunConfig, TrainConfig
from recrl_cli.data.prepare.kuairand import BEHAVIOURS, KuaiRandPrepareParams, prepare_kuairand
from recrl_cli.data.synth.kuairand import write_kuairand
from recrl_cli.errors import ConfigError, DataError
from recrl_cli.sim.config import RESPONSE_SWITCHES, SimulatorConfig, response_switches
from recrl_cli.sim.data import load_kuairand_data
from recrl_cli.sim.response_model import UserResponseModel, arrange_feedback
from recrl_cli.sim.synthetic import synthetic_feature_tables
from recrl_cli.sim.train import (
    build_simulator,
    evaluate_saved_simulator,
    load_response_model,
    load_simulator_predictor,
)
from recrl_cli.training.trainer import StopSignal, Trainer, TrainingInterrupted

TINY = dict(user_latent=8, item_latent=8, enc_dim=16, n_layers=2, n_heads=2, ff_dim=16, state_hidden=24,
            history_length=12)  # fmt: skip
B, H, K = 5, 12, 3


# Tiny tensors: a second thread only adds synchronisation on a shared 2-core machine (conftest.one_thread).
pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_model(seed: int = 0, **switches) -> UserResponseModel:
    torch.manual_seed(seed)
    users, items = synthetic_feature_tables(30, 40, seed=1)
    return UserResponseModel(SimulatorConfig(**{**TINY, **switches}), users, items).eval()


def inputs(seed: int = 0, pad: int = 4) -> dict[str, torch.Tensor]:
    """A batch whose first user has ``pad`` padding slots (zeros, as gather_history writes them)."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(B, H, dtype=torch.bool)
    mask[0, :pad] = False
    items = torch.randint(1, 41, (B, H), generator=g) * mask
    feedback = (torch.rand(B, H, 7, generator=g) < 0.4).float() * mask[..., None]
    return dict(user=torch.randint(1, 31, (B,), generator=g), hist_items=items, feedback=feedback, mask=mask,
                targets=torch.randint(1, 41, (B, K), generator=g))  # fmt: skip


def same_weights(dst: UserResponseModel, src: UserResponseModel) -> UserResponseModel:
    dst.load_state_dict(src.state_dict(), strict=False)
    return dst


# ---- shapes and architecture -------------------------------------------------------------------------------------


def test_output_shapes():
    m, x = tiny_model(), inputs()
    assert m(**x).shape == (B, K, 7)
    enc = m.encode_items(x["hist_items"])
    width = 16 + 16  # [e; q]: d = 16 and the taste width t = 16 (default)
    assert enc.shape == (B, H, width) and m.item_table().shape == (41, width) and m.item_dim == width
    torch.testing.assert_close(enc, m.item_table()[x["hist_items"]])  # per-id encoding = the table row
    state = m.user_state(x["user"], enc, x["feedback"], x["mask"])
    assert state.shape == (B, 48 + 16) == (B, m.state_dim)
    assert m.behaviour_vectors(state).shape == (B, 7, width)
    kuaisim = tiny_model(per_row_window=True, bounded_logits=True, no_user_taste=True)
    assert kuaisim.item_table().shape == (41, 16) and kuaisim.state_dim == 48


def test_score_is_scaled_mean_plus_taste_product_plus_bias():
    m, x = tiny_model(), inputs()
    with torch.no_grad():
        m.behaviour_bias.copy_(torch.linspace(-3, 1, 7))
    enc = m.encode_items(x["targets"])
    vec = m.behaviour_vectors(
        m.user_state(x["user"], m.encode_items(x["hist_items"]), x["feedback"], x["mask"])
    )
    d = 16
    naive = torch.zeros(B, K, 7)
    for b, k, j in torch.cartesian_prod(torch.arange(B), torch.arange(K), torch.arange(7)).tolist():
        e, v = enc[b, k], vec[b, j]
        naive[b, k, j] = (e[:d] * v[:d]).mean() * m.logit_scale[j].exp() + e[d:] @ v[d:] + m.behaviour_bias[j]
    torch.testing.assert_close(m(**x), naive)
    # the shared-table form (the env's oracle) agrees with the per-user form
    table = m.item_table()
    shared = m.score_all(vec[:, :2], table[1:], torch.arange(2))
    torch.testing.assert_close(shared[:, x["targets"][0] - 1][0], naive[0, :, :2])


def test_one_causal_pass_equals_per_row_windows():
    """The state of a training block's position t (one pass over the block) = the state the env and the
    evaluation compute from the left-padded window of the same rows: the rows before t, with the start token
    when the window reaches the user's first row, and the H rows alone when the window is full."""
    m = tiny_model()
    g = torch.Generator().manual_seed(3)
    n = H
    items = torch.randint(1, 41, (1, n), generator=g)
    fb = (torch.rand(1, n, 7, generator=g) < 0.4).float()
    user = torch.tensor([4])
    # a first block: token 0 = start token (padding item, no feedback), token t = row t - 1
    tok_items = torch.cat([torch.zeros(1, 1, dtype=torch.long), items[:, :-1]], 1)
    tok_fb = torch.cat([torch.zeros(1, 1, 7), fb[:, :-1]], 1)
    with torch.no_grad():
        block, _ = m.forward_blocks(user, tok_items, tok_fb, items, play=False)
        for t in range(n):
            mask = torch.arange(H) >= H - t  # the t rows before target t, left-padded
            hist = torch.where(mask, torch.roll(items, H - t, 1) if t else items * 0, torch.zeros_like(items))
            hist_fb = torch.roll(fb, H - t, 1) * mask[None, :, None] if t else torch.zeros_like(fb)
            z = m(user, hist, hist_fb, mask[None], items[:, t : t + 1])
            torch.testing.assert_close(z[0, 0], block[0, t], atol=1e-5, rtol=1e-5)
        # a full window (H rows, no start token) = a later block's last position, whose tokens are the H rows
        nxt = torch.randint(1, 41, (1, 1), generator=g)
        later, _ = m.forward_blocks(user, items, fb, torch.cat([items[:, 1:], nxt], 1), play=False)
        z = m(user, items, fb, torch.ones(1, H, dtype=torch.bool), nxt)
        torch.testing.assert_close(z[0, 0], later[0, -1], atol=1e-5, rtol=1e-5)


def test_history_encoder_equals_pytorch_transformer_encoder():
    """Our post-LN layers (with the last layer computing the last position only) = nn.TransformerEncoder."""
    m = tiny_model(unmasked_padding=True)  # causal mask only, as KuaiSim
    he, d = m.history, 32
    ref_layer = torch.nn.TransformerEncoderLayer(d, 2, 16, dropout=0.1, batch_first=True)
    ref = torch.nn.TransformerEncoder(ref_layer, 2, enable_nested_tensor=False).eval()
    for ours, theirs in zip(he.layers, ref.layers, strict=True):
        theirs.self_attn.in_proj_weight.data.copy_(ours.qkv.weight)
        theirs.self_attn.in_proj_bias.data.copy_(ours.qkv.bias)
        theirs.self_attn.out_proj.load_state_dict(ours.out.state_dict())
        for a, b in (("linear1", "ff1"), ("linear2", "ff2"), ("norm1", "norm1"), ("norm2", "norm2")):
            getattr(theirs, a).load_state_dict(getattr(ours, b).state_dict())
    x = inputs()
    items = m.encode_items(x["hist_items"])[..., :16]  # the history reads e, not the taste part
    tokens = torch.cat([he.item_norm(items + he.positions.weight), he.feedback(x["feedback"])], -1)
    causal = torch.nn.Transformer.generate_square_subsequent_mask(H)
    with torch.no_grad():
        expected = ref(tokens, mask=causal, is_causal=True)[:, -1]
        torch.testing.assert_close(he(items, x["feedback"], None), expected, atol=1e-5, rtol=1e-5)
        # the one-pass encoder is the same transformer at every position
        torch.testing.assert_close(he.forward_all(items, x["feedback"]), ref(tokens, mask=causal, is_causal=True),
                                   atol=1e-5, rtol=1e-5)  # fmt: skip


def test_training_attention_with_dropout_off_matches_the_fused_kernel():
    m = tiny_model()
    x = inputs()
    m.train()
    for layer in m.history.layers:
        layer.dropout = 0.0  # the manual (dropout) path is taken only when p > 0: compare it with p ≈ 0
    from recrl_cli.sim.encoders import attention

    q, k, v = (torch.randn(B, 2, H, 8) for _ in range(3))
    allowed = m.history.attention_mask(x["mask"])
    fused = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
    torch.manual_seed(0)
    manual = attention(q, k, v, allowed, causal=False, p=1e-9)
    torch.testing.assert_close(manual, fused, atol=1e-5, rtol=1e-5)
    causal = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    torch.testing.assert_close(attention(q, k, v, None, causal=True, p=1e-9), causal, atol=1e-5, rtol=1e-5)


# ---- the faithful switches ---------------------------------------------------------------------------------------


def test_faithful_preset_turns_every_switch_on():
    assert not any(response_switches(SimulatorConfig()).values())
    assert all(response_switches(SimulatorConfig(faithful=True)).values())
    assert set(response_switches(SimulatorConfig())) == set(RESPONSE_SWITCHES)
    for name in RESPONSE_SWITCHES:  # each switch alone turns on only itself
        on = response_switches(SimulatorConfig(**{name: True}))
        assert [k for k, v in on.items() if v] == [name]


def test_scrambled_feedback_is_kuaisims_cat_then_view():
    fb = torch.arange(2 * 4 * 7, dtype=torch.float32).view(2, 4, 7)
    per_behaviour = [fb[..., j] for j in range(7)]  # KuaiSim's 7 [B, H] tensors
    assert torch.equal(arrange_feedback(fb, False), torch.stack(per_behaviour, -1))
    assert torch.equal(arrange_feedback(fb, True), torch.cat(per_behaviour, -1).view(2, 4, 7))
    assert not torch.equal(arrange_feedback(fb, True), fb)
    # token t gets entries 7t..7t+6 of the behaviour-major concatenation
    assert torch.equal(arrange_feedback(fb, True)[0, 1], torch.cat(per_behaviour, -1)[0, 7:14])


def test_scrambled_model_equals_fixed_model_on_scrambled_feedback():
    fixed, x = tiny_model(), inputs()
    scrambled = same_weights(tiny_model(scrambled_feedback=True), fixed)
    expected = fixed(**{**x, "feedback": arrange_feedback(x["feedback"], True)})
    torch.testing.assert_close(scrambled(**x), expected)
    assert not torch.allclose(scrambled(**x), fixed(**x))


def test_padding_is_masked_in_fixed_mode_and_attended_in_faithful_mode():
    fixed, x = tiny_model(), inputs(pad=4)  # the one-pass default never reads padding either
    unmasked = same_weights(tiny_model(unmasked_padding=True, per_row_window=True), fixed)
    window = same_weights(tiny_model(per_row_window=True), fixed)
    junk = dict(x)
    junk["hist_items"] = x["hist_items"].clone()
    junk["hist_items"][0, :4] = 7  # change only what sits in the padding slots
    junk["feedback"] = x["feedback"].clone()
    junk["feedback"][0, :4] = 1.0
    torch.testing.assert_close(fixed(**junk), fixed(**x))  # fixed: padding cannot matter
    torch.testing.assert_close(window(**junk), window(**x))
    assert not torch.allclose(unmasked(**junk)[0], unmasked(**x)[0])  # faithful: it does
    torch.testing.assert_close(unmasked(**x)[1:], window(**x)[1:])  # full histories: identical
    torch.testing.assert_close(window(**x)[1:], fixed(**x)[1:])  # and the one pass reads them the same
    empty = dict(x, mask=torch.zeros_like(x["mask"]), hist_items=torch.zeros_like(x["hist_items"]))
    assert torch.isfinite(fixed(**empty)).all()  # an empty history does not make NaNs


def test_double_sigmoid_probabilities_and_loss():
    fixed, faithful = tiny_model(), tiny_model(double_sigmoid=True)
    z = torch.linspace(-10, 10, 350).view(50, 7)  # wider saturates float32 at exactly σ(0) or σ(1)
    assert torch.equal(fixed.probabilities(z), torch.sigmoid(z))
    p = faithful.probabilities(z)
    assert torch.equal(p, torch.sigmoid(torch.sigmoid(z)))
    assert (p > 0.5).all() and (p < 0.7311).all()  # (σ(0), σ(1)) = (0.5, 0.731)
    z = z.double()  # float64 from here: the log-form BCE below loses digits in float32
    y = (torch.rand(z.shape, generator=torch.Generator().manual_seed(0)) < 0.3).double()
    bce = lambda q: -(y * q.log() + (1 - y) * (1 - q).log())  # noqa: E731
    torch.testing.assert_close(fixed.loss(z, y), bce(torch.sigmoid(z)).mean(0).sum())
    torch.testing.assert_close(faithful.loss(z, y), bce(torch.sigmoid(torch.sigmoid(z))).mean(0).sum())


def test_pos_neg_weights_weigh_negatives_by_the_ratio():
    m = tiny_model()
    g = torch.Generator().manual_seed(1)
    z, y = torch.randn(40, 7, generator=g), (torch.rand(40, 7, generator=g) < 0.3).float()
    ratio = torch.tensor([0.8, 0.5, 0.02, 0.003, 0.001, 0.001, 0.0005])
    w = torch.where(y > 0, 1.0, ratio)
    naive = sum(F.binary_cross_entropy_with_logits(z[:, b], y[:, b], weight=w[:, b]) for b in range(7))
    torch.testing.assert_close(m.loss(z, y, ratio), naive)


def test_behaviour_bias_is_recrls_only_addition():
    fixed, x = tiny_model(), inputs()
    bare = same_weights(tiny_model(no_behaviour_bias=True), fixed)
    assert bare.behaviour_bias is None and fixed.behaviour_bias is not None
    torch.testing.assert_close(bare(**x), fixed(**x))  # the bias starts at 0
    with torch.no_grad():
        fixed.behaviour_bias.copy_(torch.arange(7.0))
    torch.testing.assert_close(fixed(**x) - bare(**x), torch.arange(7.0).expand(B, K, 7))


def test_l2_penalty_is_kuaisims_reg():
    m, x = tiny_model(), inputs()
    ids = {"item_encoder.rows.ids.weight", "user_encoder.rows.ids.weight"}
    taste = ("user_taste.", "item_taste.", "tag_taste.", "taste_out.")  # their own per-row L2
    naive = sum(
        p.square().mean() for n, p in m.named_parameters() if n not in ids and not n.startswith(taste)
    )
    naive = naive + m.user_encoder.rows.ids.weight[x["user"]].square().mean()
    naive = naive + m.item_encoder.rows.ids.weight[x["targets"]].square().mean()
    torch.testing.assert_close(m.l2_penalty(x["user"], x["targets"]), naive)


def test_config_errors():
    with pytest.raises(ConfigError, match="n_heads"):
        SimulatorConfig(enc_dim=16, n_heads=3)
    with pytest.raises(ConfigError, match="dropout"):
        SimulatorConfig(dropout=1.0)
    with pytest.raises(ConfigError, match="history_length"):
        SimulatorConfig(history_length=0)
    with pytest.raises(ConfigError, match="per_row_window"):
        SimulatorConfig(same_request=False)
    SimulatorConfig(same_request=False, per_row_window=True)  # KuaiSim's window can leave the request out
    with pytest.raises(ConfigError, match="taste"):
        SimulatorConfig(taste_lr_scale=0.0)


def test_taste_penalty_and_rate_initialised_bias():
    m, x = tiny_model(), inputs()
    naive = m.user_taste.weight[x["user"]].square().sum(-1).mean()
    naive = naive + m.item_taste.weight[x["targets"]].square().sum(-1).mean()
    torch.testing.assert_close(m.taste_penalty(x["user"], x["targets"]), naive)
    rate = torch.tensor([0.46, 0.33, 0.02, 0.0025, 0.001, 0.001, 0.0005])
    m.init_rates(rate)
    torch.testing.assert_close(torch.sigmoid(m.behaviour_bias), rate)
    bounded = tiny_model(bounded_logits=True)
    bounded.init_rates(rate)  # KuaiSim's bounded score starts at 0 whatever the rates
    assert torch.equal(bounded.behaviour_bias, torch.zeros(7)) and bounded.logit_scale is None


# ---- training on prepared synthetic KuaiRand ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("kr_sim")
    write_kuairand(root / "raw", num_users=300, num_items=200, num_impressions=20_000, seed=7)
    prepare_kuairand(root / "raw", root / "out", KuaiRandPrepareParams())
    return root / "out"


def run_config(prepared: Path, **model) -> RunConfig:
    return RunConfig(
        algo="simulator", data=DataConfig(prepared_dir=str(prepared)),
        train=TrainConfig(epochs=5, batch_size=512, lr=1e-2, weight_decay=0.0, patience=0, seed=0),
        model=SimulatorConfig(**{**TINY, "n_layers": 1, "history_length": 8, **model}),
    )  # fmt: skip


@pytest.fixture(scope="module")
def trained(prepared):
    torch.manual_seed(0)
    algo = build_simulator(run_config(prepared), None, torch.device("cpu"))  # loads the directory itself
    init = algo.evaluate("val")
    start = {n: p.detach().clone() for n, p in algo.model.named_parameters()}
    history = Trainer(algo, algo.stages(), device=torch.device("cpu"), seed=0).fit()
    return algo, init, start, history


def test_training_improves_validation_auc_over_init(trained):
    algo, init, _, history = trained
    final = algo.evaluate("val")
    assert final["is_click/auc"] > init["is_click/auc"] + 0.08  # planted truth: oracle AUC ≈ 0.79
    assert final["long_view/auc"] > init["long_view/auc"] + 0.08
    play = {"play/ce", "play/mae_seconds", "valid_play/auc"}
    assert set(final) == {f"{b}/{k}" for b in (*BEHAVIOURS, "mean") for k in ("auc", "logloss")} | play
    # The play-time head learns the planted play-time model: lower CE than at init, and P(play > 10 s)
    # ranks rows better than at init.
    assert final["play/ce"] < init["play/ce"] - 0.1
    assert final["valid_play/auc"] > init["valid_play/auc"] + 0.05
    assert [r["epoch"] for r in history] == [1, 2, 3, 4, 5] and "valid/mean/auc" in history[-1]
    assert history[-1]["train/epoch_loss"] < history[0]["train/epoch_loss"]


def test_every_trainable_parameter_moves(trained):
    algo, _, start, _ = trained
    frozen = [n for n, p in algo.model.named_parameters() if torch.equal(p.detach(), start[n])]
    assert frozen == []


def test_export_round_trip_predictor_and_saved_evaluation(trained, prepared):
    algo, _, _, _ = trained
    exported = algo.export()
    model = load_response_model(exported)
    assert not model.training and model.switches == algo.model.switches
    rows = algo.data.splits["val"][:50]
    torch.testing.assert_close(
        load_simulator_predictor(exported, torch.device("cpu"))(rows), algo.predict(rows)
    )
    saved = evaluate_saved_simulator(exported, prepared, "val")
    assert saved["is_click/auc"] == pytest.approx(algo.evaluate("val")["is_click/auc"])
    assert exported["positive_rate"][0] == pytest.approx(float(algo.data.positive_rate()[0]))


def test_state_round_trip(trained, prepared):
    algo, _, _, _ = trained
    other = build_simulator(run_config(prepared), load_kuairand_data(prepared), torch.device("cpu"))
    other.load_state_dict(algo.state_dict())
    rows = algo.data.splits["test"][:40]
    torch.testing.assert_close(other.predict(rows), algo.predict(rows))


def test_interrupted_and_resumed_training_is_exact(prepared, tmp_path):
    cfg = run_config(prepared, faithful=True)  # dropout everywhere: the RNG state must be restored too
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, epochs=2, max_steps=6))
    data = load_kuairand_data(prepared)

    def run(stop_after: int | None):
        torch.manual_seed(0)
        algo = build_simulator(cfg, data, torch.device("cpu"))
        stop = StopSignal()
        trainer = Trainer(algo, algo.stages(), device=torch.device("cpu"), seed=0, stop=stop,
                          checkpoint_path=tmp_path / f"ckpt{stop_after}.pt")  # fmt: skip
        if stop_after is not None:
            update, calls = trainer.stages[0].update, []

            def update_then_stop(idx):
                calls.append(1)
                stop.requested = len(calls) == stop_after
                return update(idx)

            trainer.stages[0].update = update_then_stop
            with pytest.raises(TrainingInterrupted):
                trainer.fit()
            algo = build_simulator(cfg, data, torch.device("cpu"))
            trainer = Trainer(algo, algo.stages(), device=torch.device("cpu"), seed=0)
            trainer.resume(tmp_path / f"ckpt{stop_after}.pt")
        trainer.fit()
        return algo.model.state_dict()

    reference, resumed = run(None), run(3)
    for name, value in reference.items():
        assert torch.equal(value, resumed[name]), name


def test_faithful_training_runs_and_weights_negatives(prepared):
    cfg = run_config(prepared, faithful=True)
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, max_steps=3, epochs=1))
    algo = build_simulator(cfg, load_kuairand_data(prepared), torch.device("cpu"))
    rate = algo.data.positive_rate()
    torch.testing.assert_close(algo.neg_weight, rate / (1 - rate))
    Trainer(algo, algo.stages(), device=torch.device("cpu"), seed=0).fit()
    p = algo.predict(algo.data.splits["val"])
    assert (p > 0.5).all() and (p < 0.7311).all()


def test_non_kuairand_directory_is_a_data_error(tmp_path, prepared):
    import json
    import shutil

    shutil.copytree(prepared, tmp_path / "other")
    manifest = json.loads((tmp_path / "other" / "manifest.json").read_text())
    manifest["dataset"] = "retailrocket"
    (tmp_path / "other" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DataError, match="simulator needs"):
        load_kuairand_data(tmp_path / "other")


def test_blocks_cover_every_row_once_within_one_user_and_tokens_are_the_rows_before():
    from recrl_cli.sim.sequence import block_batch, make_blocks
    from recrl_cli.sim.synthetic import synthetic_row_table

    table = synthetic_row_table(6, 40, rows_per_user=16, seed=2)
    keep = torch.ones(table.num_rows, dtype=torch.bool)
    keep[torch.tensor([3, 20, 21])] = False  # gaps: a block never spans one
    rows = torch.arange(table.num_rows)[keep]
    blocks = make_blocks(table, rows, block_length=5)
    spans = list(zip(blocks.start.tolist(), blocks.length.tolist(), strict=True))
    covered = torch.cat([torch.arange(s, s + n) for s, n in spans])
    assert torch.equal(covered, rows) and int(blocks.length.max()) <= 5
    for s, n in spans:
        assert len(set(table.user[s : s + n].tolist())) == 1
    b = block_batch(table, blocks.start, blocks.length, 5)
    for i, (s, n) in enumerate(spans):
        for t in range(n):
            first = t == 0 and int(table.user_pos[s]) == 0
            assert int(b.targets[i, t]) == int(table.item[s + t]) and bool(b.valid[i, t])
            want = 0 if first else int(table.item[s + t - 1])
            assert int(b.tok_items[i, t]) == want
            fb = torch.zeros(7) if first else table.labels[s + t - 1].float()
            assert torch.equal(b.tok_feedback[i, t], fb)
        assert not b.valid[i, n:].any()
