"""Cost and benefit of the text item encoder on synthetic RetailRocket whose item text carries planted signal.

    python benchmarks/bench_text.py --events 60000 --seeds 0,1,2

Three measurements, every figure computed here:

1. encode: frozen encoding throughput (items/s) of ``encode_all`` for randomly initialised BERT-shaped models
   (``tiny`` H=16/1 layer, ``mini`` H=256/4 layers like BERT-mini, ``base`` H=768/12 layers like BERT-base),
   ``--max-len`` tokens, batches of 256; plus the second build (a disk-cache hit).
2. step: mean MMoE training step time (batch ``--batch-size``) with id embeddings, a frozen text encoder and a
   fine-tuned one (tiny and mini); the slowdown is the ratio to ids.
3. accuracy: test AUC of MMoE with ``item_encoder`` id / text / id+text (frozen tiny model), and text fine-tuned,
   for each seed (data, weights and shuffling all follow the seed), early stopping on validation.

The synthetic items' text (``write_retailrocket(item_text=True)``) has half its words drawn from a word set of the
item's click-effect quintile; the id embedding can learn the same effect only from the item's own rows.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import torch

from recrl_cli.config.schema import DataConfig, RunConfig, TrainConfig
from recrl_cli.data.prepare.retailrocket import RetailRocketPrepareParams, prepare_retailrocket
from recrl_cli.data.synth.retailrocket import write_retailrocket
from recrl_cli.nets.mtl.config import MTLConfig
from recrl_cli.pipeline import train_run
from recrl_cli.text.backend import load_language_model
from recrl_cli.text.encoder import build_text_encoder, encode_all, tokenize
from recrl_cli.text.items import load_item_texts, texts_from_captions, write_item_texts
from recrl_cli.text.vocab import init_text_model
from recrl_cli.tracking.base import NullTracker

SHAPES = {"tiny": dict(hidden=16, layers=1, heads=2, intermediate=32),
          "mini": dict(hidden=256, layers=4, heads=4, intermediate=1024),
          "base": dict(hidden=768, layers=12, heads=12, intermediate=3072)}  # fmt: skip
NET = dict(embed_dim=16, bottom_dims=(64, 32), tower_dims=(16,), expert_num=4, dropout=0.2)


def make_data(root: Path, events: int, seed: int) -> Path:
    write_retailrocket(root / "raw", num_events=events, seed=seed, item_text=True)
    prepare_retailrocket(root / "raw", root / "prep", RetailRocketPrepareParams(min_count=1))
    write_item_texts(root / "prep", texts_from_captions(root / "prep", root / "raw" / "item_text.csv"))
    return root / "prep"


def bench_encode(root: Path, texts: list[str], shapes: list[str], max_len: int, n_items: int) -> dict:
    out = {}
    for name in shapes:
        model_dir = init_text_model(root / f"bert_{name}", texts, **SHAPES[name])
        lm = load_language_model(str(model_dir))
        items = (texts * (n_items // max(1, len(texts)) + 1))[: n_items if name != "base" else n_items // 4]
        tokens, mask = tokenize(lm.tokenizer, items, max_len)
        encode_all(lm.model, tokens[:256], mask[:256])  # warm-up
        start = time.perf_counter()
        encode_all(lm.model, tokens, mask)
        seconds = time.perf_counter() - start
        cfg = SimpleNamespace(text_model=str(model_dir), text_mode="frozen", text_max_len=max_len)
        cache = root / f"cache_{name}"
        build_text_encoder(cfg, items, 16, torch.device("cpu"), cache)  # miss: writes the entry
        start = time.perf_counter()
        hit = build_text_encoder(cfg, items, 16, torch.device("cpu"), cache)
        out[name] = {"items": len(items), "tokens": int(tokens.shape[1]), "items_per_s": len(items) / seconds,
                     "cache_hit_s": time.perf_counter() - start, "hit": hit.cache_hit}  # fmt: skip
        print(f"encode {name:5s} H={SHAPES[name]['hidden']:4d}: {out[name]['items_per_s']:9.1f} items/s "
              f"({len(items)} items, L={tokens.shape[1]}); cached rebuild {out[name]['cache_hit_s']:.2f} s")  # fmt: skip
    return out


def run_cfg(prep: Path, seed: int, epochs: int, batch: int, **model) -> RunConfig:
    return RunConfig(
        algo="mmoe", data=DataConfig(prepared_dir=str(prep)),
        train=TrainConfig(epochs=epochs, batch_size=batch, seed=seed, device="cpu", patience=2,
                          checkpoint_every=0),
        model=MTLConfig(**NET, **model),
    )  # fmt: skip


def bench_steps(prep: Path, root: Path, batch: int, steps: int) -> dict:
    from recrl_cli.algorithms.supervised import SupervisedMTL
    from recrl_cli.data.tensors import load_prepared

    data = load_prepared(prep, torch.device("cpu"))
    n = data.splits["train"].num_rows
    variants = {"id": {}}
    for name in ("tiny", "mini"):
        for mode in ("frozen", "finetune"):
            variants[f"text-{mode}-{name}"] = dict(item_encoder="text", text_model=str(root / f"bert_{name}"),
                                                   text_mode=mode)  # fmt: skip
    out = {}
    for label, model in variants.items():
        algo = SupervisedMTL("mmoe", run_cfg(prep, 0, 1, batch, **model), data, torch.device("cpu"))
        gen = torch.Generator().manual_seed(0)
        batches = [torch.randint(0, n, (batch,), generator=gen) for _ in range(steps + 2)]
        for idx in batches[:2]:
            algo.update(idx)  # warm-up
        start = time.perf_counter()
        for idx in batches[2:]:
            algo.update(idx)
        out[label] = (time.perf_counter() - start) / steps * 1e3
    for label, ms in out.items():
        print(f"step {label:22s} {ms:8.2f} ms  ({ms / out['id']:.2f}x ids)")
    return out


def bench_accuracy(
    root: Path, events: int, seeds: list[int], epochs: int, batch: int, shape: str, only: list[str]
) -> dict:
    out: dict[str, list[float]] = {}
    for seed in seeds:
        prep = make_data(root / f"acc_{seed}", events, seed)
        texts = load_item_texts(prep)
        init_text_model(root / f"acc_{seed}" / "bert", texts, **SHAPES[shape], seed=seed)
        bert = str(root / f"acc_{seed}" / "bert")
        variants = {"id": {}, "text": dict(item_encoder="text", text_model=bert),
                    "id+text": dict(item_encoder="id+text", text_model=bert),
                    "text-finetune": dict(item_encoder="text", text_model=bert, text_mode="finetune")}  # fmt: skip
        for label, model in variants.items():
            if only and label not in only:
                continue
            cfg = run_cfg(prep, seed, epochs, batch, **model)
            result = train_run(
                cfg, NullTracker(), experiment="bench", runs_root=root / f"runs_{seed}_{label}"
            )
            for task in ("click", "pay"):
                out.setdefault(f"{label}/{task}", []).append(result.metrics[f"test/{task}/auc"])
            print(f"seed {seed} {label:14s} test AUC click {result.metrics['test/click/auc']:.4f} "
                  f"pay {result.metrics['test/pay/auc']:.4f}")  # fmt: skip
    for key, values in out.items():
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        print(f"{key:22s} mean {statistics.mean(values):.4f} ± {sd:.4f} over {len(values)} seeds")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=60_000)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--max-len", type=int, default=16)
    parser.add_argument("--encode-items", type=int, default=2048)
    parser.add_argument("--shapes", default="tiny,mini,base")
    parser.add_argument("--acc-shape", default="tiny", choices=tuple(SHAPES), help="model shape for accuracy")
    parser.add_argument("--variants", default="", help="accuracy variants to run (default all)")
    parser.add_argument("--skip", default="", help="comma list of parts to skip: encode,step,accuracy")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    skip = set(filter(None, args.skip.split(",")))
    print(f"torch threads {torch.get_num_threads()}")
    figures: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        prep = make_data(root / "main", args.events, 0)
        texts = load_item_texts(prep)
        shapes = args.shapes.split(",")
        if "encode" not in skip:
            figures["encode"] = bench_encode(root, texts, shapes, args.max_len, args.encode_items)
        else:
            for name in ("tiny", "mini"):
                init_text_model(root / f"bert_{name}", texts, **SHAPES[name])
        if "step" not in skip:
            figures["step_ms"] = bench_steps(prep, root, args.batch_size, args.steps)
        if "accuracy" not in skip:
            seeds = [int(s) for s in args.seeds.split(",")]
            only = list(filter(None, args.variants.split(",")))
            figures["auc"] = bench_accuracy(
                root, args.events, seeds, args.epochs, args.batch_size, args.acc_shape, only
            )
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
