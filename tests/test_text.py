"""The text item encoder end to end on synthetic data, with a tiny randomly initialised BERT (no weights are
downloaded: the model is built from a BertConfig and saved to a temporary directory with its own vocabulary)."""

from __future__ import annotations

from types import SimpleNamespace

import polars as pl
import pytest
import torch

transformers = pytest.importorskip("transformers")

from recrl_cli.config.schema import DataConfig, RunConfig, TrainConfig  # noqa: E402
from recrl_cli.data.prepare.retailrocket import RetailRocketPrepareParams, prepare_retailrocket  # noqa: E402
from recrl_cli.data.synth.retailrocket import write_retailrocket  # noqa: E402
from recrl_cli.nets.mtl.config import MTLConfig  # noqa: E402
from recrl_cli.text.backend import load_language_model  # noqa: E402
from recrl_cli.text.cache import cache_key  # noqa: E402
from recrl_cli.text.encoder import build_text_encoder, mean_pool, run_model, tokenize  # noqa: E402
from recrl_cli.text.items import (  # noqa: E402
    ITEM_TEXT,
    load_item_texts,
    texts_from_captions,
    texts_from_properties,
    write_item_texts,
)
from recrl_cli.text.vocab import SPECIAL_TOKENS, build_vocab, init_text_model  # noqa: E402

TINY = dict(hidden=16, layers=1, heads=2, intermediate=32)
SMALL_NET = ["--embed-dim", 8, "--bottom-dims", 16, "--tower-dims", 8, "--expert-num", 2, "--batch-size", 256,
             "--device", "cpu", "--threads", 1]  # fmt: skip


# Tiny models: one thread is faster and keeps the suite from oversubscribing 2 cores (conftest.one_thread).
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def rr(tmp_path_factory) -> SimpleNamespace:
    """Synthetic RetailRocket with item text, prepared (every train item its own id), item_text.parquet written,
    and a tiny random BERT over the texts' words."""
    root = tmp_path_factory.mktemp("text_rr")
    write_retailrocket(root / "raw", num_events=3000, seed=1, item_text=True)
    prepare_retailrocket(root / "raw", root / "prep", RetailRocketPrepareParams(min_count=1))
    write_item_texts(root / "prep", texts_from_captions(root / "prep", root / "raw" / "item_text.csv"))
    texts = load_item_texts(root / "prep")
    init_text_model(root / "bert", texts, **TINY, seed=0)
    return SimpleNamespace(root=root, raw=root / "raw", prep=root / "prep", bert=root / "bert", texts=texts)


def _cfg(rr, **model) -> RunConfig:
    return RunConfig(
        algo="mmoe", data=DataConfig(prepared_dir=str(rr.prep)),
        train=TrainConfig(epochs=1, batch_size=128, device="cpu", threads=1),
        model=MTLConfig(embed_dim=8, bottom_dims=(16,), tower_dims=(8,), expert_num=2, dropout=0.0,
                        item_encoder="text", text_model=str(rr.bert), **model),
    )  # fmt: skip


# ---- item text ------------------------------------------------------------------------------------------------
def test_item_texts_follow_the_encoded_ids(rr):
    """item_text.parquet maps each encoded id to the text of the one raw item it stands for."""
    raw = pl.read_csv(rr.raw / "item_text.csv")
    train = pl.read_parquet(rr.prep / "train.parquet", columns=["item", "itemid"])
    pairs = train.filter(pl.col("item") >= 2).unique("item").head(20)
    by_raw = dict(zip(raw["itemid"].to_list(), raw["text"].to_list(), strict=True))
    for item, itemid in pairs.iter_rows():
        assert rr.texts[item] == by_raw[itemid]
    assert rr.texts[0] == "" and rr.texts[1] == ""  # unknown / rare buckets stand for many items


def test_kuairand_captions_with_categories(tmp_path):
    prep = tmp_path / "prep"
    prep.mkdir()
    features = [{"name": "user", "cardinality": 2}, {"name": "item", "cardinality": 4}]
    splits = {s: {"file": f"{s}.parquet", "rows": 0} for s in ("train", "val", "test")}
    manifest = {"schema_version": 1, "dataset": "kuairand", "parameters": {}, "tasks": ["is_click"],
                "features": features, "splits": splits, "fingerprint": "x"}  # fmt: skip
    (prep / "manifest.json").write_text(__import__("json").dumps(manifest))
    pl.DataFrame({"item": [1, 2, 3], "video_id": [10, 20, 30]}).write_parquet(prep / "items.parquet")
    caps = tmp_path / "caps.csv"
    pl.DataFrame({"final_video_id": [20, 10, 99], "caption": ["dog runs", None, "unused"],
                  "duration": [1, 2, 3]}).write_csv(caps)  # fmt: skip
    cats = tmp_path / "cats.csv"
    pl.DataFrame({"final_video_id": [10, 30], "first_level_category_name": ["pets", "food"],
                  "second_level_category_name": ["dogs", None], "first_level_category_id": [1, 2]}).write_csv(cats)  # fmt: skip
    write_item_texts(prep, texts_from_captions(prep, caps, cats))
    assert load_item_texts(prep) == ["", "pets dogs", "dog runs", "food"]


def test_retailrocket_property_tokens_become_whole_words(rr):
    table = texts_from_properties(rr.prep, rr.raw)
    props = pl.concat([pl.read_csv(rr.raw / f"item_properties_part{i}.csv", schema_overrides={"value": pl.String})
                       for i in (1, 2)])  # fmt: skip
    ids = pl.read_parquet(rr.prep / "train.parquet", columns=["item", "itemid"]).filter(pl.col("item") >= 2)
    item, itemid = ids.row(0)
    latest = props.filter((pl.col("itemid") == itemid) & (pl.col("property") == "888")).sort("timestamp")
    text = table.filter(pl.col("item") == item)["text"].item()
    if latest.height:  # naive reference: the last value's tokens, each as p888x<token>
        for token in latest["value"][-1].split(" "):
            assert f"p888x{token.replace('.', 'd')}" in text.split()
    init_text_model(rr.root / "bert_props", table["text"].to_list(), **TINY)
    tok = transformers.AutoTokenizer.from_pretrained(rr.root / "bert_props", local_files_only=True)
    word = text.split()[0]
    assert tok.tokenize(word) == [word.lower()]  # one token, not WordPiece fragments


def test_vocab_is_whole_words_by_count():
    vocab = build_vocab(["b a a", "c a b"], min_count=2)
    assert vocab == [*SPECIAL_TOKENS, "a", "b"]


# ---- encoder ----------------------------------------------------------------------------------------------------
def test_batched_encoding_matches_one_item_at_a_time(rr):
    lm = load_language_model(str(rr.bert))
    lm.model.eval()
    texts = rr.texts[2:7]
    tokens, mask = tokenize(lm.tokenizer, texts, 32)
    batched = run_model(lm.model, tokens, mask)
    for i, text in enumerate(texts):  # naive reference: each text alone, no padding at all
        t, m = tokenize(lm.tokenizer, [text], 32)
        alone = lm.model(input_ids=t, attention_mask=m).last_hidden_state[0].mean(0)
        torch.testing.assert_close(batched[i], alone, atol=1e-5, rtol=1e-5)
    h = torch.randn(2, 3, 4)
    m = torch.tensor([[1, 1, 0], [0, 0, 0]])
    torch.testing.assert_close(mean_pool(h, m), torch.stack([h[0, :2].mean(0), torch.zeros(4)]))


def test_length_sorted_encoding_matches_one_item_at_a_time(rr):
    """encode_all sorts by length and cuts each batch to its longest text; rows come back in id order."""
    from recrl_cli.text.encoder import encode_all

    lm = load_language_model(str(rr.bert))
    words = rr.texts[2].split()
    texts = [" ".join(words[: k % 7]) for k in (5, 1, 6, 0, 3, 2, 6, 4)]  # lengths 0..6, shuffled
    tokens, mask = tokenize(lm.tokenizer, texts, 32)
    table = encode_all(lm.model, tokens, mask, batch_size=3)
    lm.model.eval()
    for i, text in enumerate(texts):
        t, m = tokenize(lm.tokenizer, [text], 32)
        alone = lm.model(input_ids=t, attention_mask=m).last_hidden_state[0].mean(0)
        torch.testing.assert_close(table[i], alone, atol=1e-5, rtol=1e-5)


def test_finetune_forward_runs_each_item_once_and_reaches_the_model(rr):
    cfg = SimpleNamespace(text_model=str(rr.bert), text_mode="finetune", text_max_len=16)
    enc = build_text_encoder(cfg, rr.texts, 8, torch.device("cpu"), rr.root / "unused_cache")
    enc.eval()
    ids = torch.tensor([[3, 5], [3, 2]])
    out = enc(ids)
    assert out.shape == (2, 2, 8)
    torch.testing.assert_close(out[0, 0], out[1, 0])
    ref = enc.proj(run_model(enc.model, enc.tokens[[5]], enc.mask[[5]]))[0]
    torch.testing.assert_close(out[0, 1], ref, atol=1e-5, rtol=1e-5)
    out.sum().backward()
    assert all(p.grad is not None for p in enc.model.embeddings.parameters())


def test_frozen_cache_is_reused_and_invalidated(rr, tmp_path):
    cfg = SimpleNamespace(text_model=str(rr.bert), text_mode="frozen", text_max_len=16)
    cpu = torch.device("cpu")
    first = build_text_encoder(cfg, rr.texts, 8, cpu, tmp_path)
    again = build_text_encoder(cfg, rr.texts, 8, cpu, tmp_path)
    assert first.cache_hit is False and again.cache_hit is True
    assert torch.equal(first.table, again.table) and len(list(tmp_path.glob("*.pt"))) == 1
    changed = [*rr.texts[:-1], rr.texts[-1] + " amazing"]
    other_text = build_text_encoder(cfg, changed, 8, cpu, tmp_path)
    assert other_text.cache_hit is False and not torch.equal(other_text.table[-1], first.table[-1])
    torch.testing.assert_close(other_text.table[:-1], first.table[:-1])
    init_text_model(tmp_path / "bert2", rr.texts, **TINY, seed=1)  # same vocabulary, other weights
    other_model = build_text_encoder(SimpleNamespace(**{**vars(cfg), "text_model": str(tmp_path / "bert2")}),
                                     rr.texts, 8, cpu, tmp_path)  # fmt: skip
    assert other_model.cache_hit is False and not torch.equal(other_model.table, first.table)
    assert len(list(tmp_path.glob("*.pt"))) == 3
    fp = load_language_model(str(rr.bert)).fingerprint
    assert cache_key(fp, rr.texts, 16) != cache_key(fp, rr.texts, 17)  # max_len is part of the key


# ---- training ---------------------------------------------------------------------------------------------------
def _train_steps(rr, mode: str, steps: int = 3):
    from recrl_cli.algorithms.supervised import SupervisedMTL
    from recrl_cli.data.tensors import load_prepared

    data = load_prepared(rr.prep, torch.device("cpu"))
    algo = SupervisedMTL("mmoe", _cfg(rr, text_mode=mode), data, torch.device("cpu"))
    text = algo.model.embedding.text
    before = {k: v.clone() for k, v in text.state_dict().items()}
    for i in range(steps):
        algo.update(torch.arange(i * 128, (i + 1) * 128))
    return algo, text, before


def test_frozen_mode_leaves_the_language_model_untouched(rr):
    on_disk = load_language_model(str(rr.bert)).model.state_dict()
    algo, text, before = _train_steps(rr, "frozen")
    assert not hasattr(text, "model")  # no language model inside the trained network at all
    assert torch.equal(text.table, before["table"])  # the cached vectors did not move
    assert not torch.equal(text.proj.weight, before["proj.weight"])  # the projection learned
    after_disk = load_language_model(str(rr.bert)).model.state_dict()
    assert all(torch.equal(on_disk[k], after_disk[k]) for k in on_disk)
    assert all(p is not text.table for p in algo.model.parameters())


def test_finetune_mode_moves_the_language_model(rr):
    _, text, before = _train_steps(rr, "finetune")
    moved = [k for k, v in text.model.state_dict().items() if not torch.equal(v, before[f"model.{k}"])]
    assert any("encoder.layer.0" in k for k in moved) and any("word_embeddings" in k for k in moved)


# ---- CLI ----------------------------------------------------------------------------------------------------------
def test_cli_text_items_init_model_train_and_evaluate(cli, rr, tmp_path, mlflow_sqlite_uri):
    prep = tmp_path / "prep"
    import shutil

    shutil.copytree(rr.prep, prep, ignore=shutil.ignore_patterns(ITEM_TEXT, "text_cache"))
    res = cli("text", "items", prep, "--captions", rr.raw / "item_text.csv")
    assert res.exit_code == 0 and "item texts written" in res.output, res.output
    res = cli("text", "init-model", tmp_path / "bert", "--data", prep, "--hidden", 16, "--layers", 1)
    assert res.exit_code == 0, res.output
    for mode in ("frozen", "finetune"):
        res = cli("train", "mmoe", "--data", prep, "--item-encoder", "text", "--text-model", tmp_path / "bert",
                  "--text-mode", mode, "--epochs", 1, *SMALL_NET, "--tracking-uri", mlflow_sqlite_uri,
                  "--runs-dir", tmp_path / f"runs_{mode}")  # fmt: skip
        assert res.exit_code == 0, res.output
        model_pt = next((tmp_path / f"runs_{mode}").glob("*/model.pt"))
        scored = cli("evaluate", model_pt, "--data", prep, "--tracking-uri", mlflow_sqlite_uri)
        assert scored.exit_code == 0 and "click" in scored.output, scored.output
    assert len(list((prep / "text_cache").glob("*.pt"))) == 1  # only the frozen run writes the cache


def test_cli_rmtl_with_text(cli, rr, tmp_path, mlflow_sqlite_uri):
    res = cli("train", "rmtl", "--data", rr.prep, "--item-encoder", "text", "--text-model", rr.bert,
              "--embed-dim", 8, "--bottom-dims", 16, "--tower-dims", 8, "--expert-num", 2,
              "--critic-embed-dim", 8, "--critic-bottom-dims", 16, "--critic-tower-dims", 8,
              "--pretrain-epochs", 1, "--critic-epochs", 1, "--polish-epochs", 1, "--batch-size", 512,
              "--critic-batch-size", 512, "--device", "cpu", "--threads", 1,
              "--tracking-uri", mlflow_sqlite_uri, "--runs-dir", tmp_path / "runs")  # fmt: skip
    assert res.exit_code == 0, res.output
    saved = torch.load(next((tmp_path / "runs").glob("*/model.pt")), weights_only=False)
    assert saved["exported"]["model_config"]["item_encoder"] == "text"
    assert any(k.endswith("text.table") for k in saved["exported"]["weights"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--text-model", "/nonexistent/bert"], "no such directory"),
        (["--text-model", "{bert}", "--text-mode", "bad"], "text_mode"),
    ],
)
def test_cli_text_errors_are_one_line(cli, rr, tmp_path, args, message):
    args = [str(a).replace("{bert}", str(rr.bert)) for a in args]
    res = cli("train", "mmoe", "--data", rr.prep, "--item-encoder", "text", *args, "--device", "cpu",
              "--tracking-uri", f"sqlite:///{tmp_path / 'db'}", "--runs-dir", tmp_path / "runs")  # fmt: skip
    assert res.exit_code == 1 and "Traceback" not in res.output
    errors = [line for line in res.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], res.output
    assert not (tmp_path / "runs").exists()


def test_cli_text_items_errors(cli, rr, tmp_path):
    res = cli("text", "items", rr.prep)
    assert res.exit_code == 1 and "exactly one of" in res.output
    empty = tmp_path / "prep"
    empty.mkdir()
    res = cli("text", "items", empty, "--captions", rr.raw / "item_text.csv")
    assert res.exit_code == 1 and "no prepared dataset" in res.output
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    res = cli("text", "items", rr.prep, "--captions", bad)
    assert res.exit_code == 1 and "lacks the column" in res.output, res.output


def test_missing_item_text_is_a_one_line_error(cli, rr, tmp_path):
    import shutil

    prep = tmp_path / "prep"
    shutil.copytree(rr.prep, prep, ignore=shutil.ignore_patterns(ITEM_TEXT, "text_cache"))
    res = cli("train", "mmoe", "--data", prep, "--item-encoder", "text", "--text-model", rr.bert,
              "--device", "cpu", "--tracking-uri", f"sqlite:///{tmp_path / 'db'}", "--runs-dir", tmp_path / "r")  # fmt: skip
    assert (
        res.exit_code == 1 and "item_text.parquet is missing" in res.output and "Traceback" not in res.output
    )


# ---- RL agents (KuaiRand simulator) -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def kr(tmp_path_factory) -> SimpleNamespace:
    """Tiny synthetic KuaiRand with captions, item text, a tiny BERT and a tiny trained simulator."""
    from recrl_cli.data.prepare.kuairand import KuaiRandPrepareParams, prepare_kuairand
    from recrl_cli.data.synth.kuairand import write_kuairand
    from recrl_cli.pipeline import train_run
    from recrl_cli.sim.config import SimulatorConfig
    from recrl_cli.tracking.base import NullTracker

    root = tmp_path_factory.mktemp("text_kr")
    write_kuairand(root / "raw", num_users=60, num_items=50, num_impressions=2_000, seed=7, captions=True)
    prepare_kuairand(root / "raw", root / "prep", KuaiRandPrepareParams())
    write_item_texts(
        root / "prep", texts_from_captions(root / "prep", root / "raw" / "kuairand_video_captions.csv")
    )
    init_text_model(root / "bert", load_item_texts(root / "prep"), **TINY)
    sim = dict(user_latent=4, item_latent=4, enc_dim=8, n_layers=1, n_heads=2, ff_dim=8, state_hidden=8,
               history_length=8)  # fmt: skip
    cfg = RunConfig(algo="simulator", data=DataConfig(dataset="kuairand", prepared_dir=str(root / "prep")),
                    train=TrainConfig(epochs=1, max_steps=2, batch_size=64, device="cpu", threads=1),
                    model=SimulatorConfig(**sim))  # fmt: skip
    run = train_run(cfg, NullTracker(), experiment="sim", runs_root=root / "runs")
    return SimpleNamespace(prep=root / "prep", bert=root / "bert", sim=run.run_dir)


TINY_AGENT = ["--batch-users", 4, "--slate-size", 2, "--warmup-steps", 3, "--iterations", 4, "--eval-steps", 3,
              "--latent", 4, "--enc-dim", 4, "--n-heads", 2, "--ff-dim", 8, "--n-layers", 1,
              "--action-hidden", 8, "--critic-hidden", 8, "--inverse-hidden", 8, "--batch-size", 4,
              "--buffer-size", 64, "--threads", 1, "--device", "cpu"]  # fmt: skip


def test_kuairand_captions_cover_every_video(kr):
    texts = load_item_texts(kr.prep)
    items = pl.read_parquet(kr.prep / "items.parquet")
    assert texts[0] == "" and all(texts[i] for i in items["item"].to_list())


@pytest.mark.parametrize("mode", ["frozen", "finetune"])
def test_cli_hac_with_text(cli, kr, tmp_path, mlflow_sqlite_uri, mode):
    res = cli("train", "hac", "--simulator", kr.sim, "--data", kr.prep, "--item-encoder", "text",
              "--text-model", kr.bert, "--text-mode", mode, *TINY_AGENT, "--tracking-uri", mlflow_sqlite_uri,
              "--runs-dir", tmp_path / "runs")  # fmt: skip
    assert res.exit_code == 0, res.output
    saved = torch.load(next((tmp_path / "runs").glob("*/model.pt")), weights_only=False)
    actor = saved["exported"]["state"]["modules"]["actor"]
    key = (
        "encoder.item_text.table"
        if mode == "frozen"
        else "encoder.item_text.model.embeddings.word_embeddings.weight"
    )
    assert key in actor and "encoder.item_text.proj.weight" in actor


def test_agent_item_table_reads_the_text(kr):
    """The policy's item kernel: text mode = features + text (id row replaced by padding), id+text keeps ids."""
    from recrl_cli.agents.algorithm import AgentRunConfig, load_simulator
    from recrl_cli.agents.config import agent_config
    from recrl_cli.agents.networks import StateEncoder
    from recrl_cli.text.attach import agent_text_factory

    model, _ = load_simulator(str(kr.sim), torch.device("cpu"))
    cfg = AgentRunConfig(item_encoder="text", text_model=str(kr.bert))
    model.item_text_factory = agent_text_factory(cfg, kr.prep, torch.device("cpu"))
    enc = StateEncoder(model, agent_config("hac", latent=4, enc_dim=4))
    table = enc.item_table()
    ids = torch.arange(table.shape[0])
    expected = enc.item_kernel(torch.zeros_like(ids), enc.item_features, enc.item_tags) + enc.item_text(ids)
    torch.testing.assert_close(table, expected)
    assert enc.item_text.table.shape[0] == table.shape[0]
