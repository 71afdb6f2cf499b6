"""Diagnostic: can a plain logistic matrix factorisation learn the planted users from the simulator's train rows?

    logit(u, i) = <p_u, q_i> + a_u + b_i + c          (click only, BCE, Adam, the train split's rows)

It is scored on the held-out rows (val + test of ``recrl prepare kuairand``) against the planted truth's AUC on
the same rows, and on the user x item part of the click logit (``recrl_cli.sim.truth.interaction_share``:
squared correlation of the double-centred users x items grids). A grid of settings (learning rate, weight
decay, embedding init, epochs) says which ones let the user embeddings learn.

    python benchmarks/bench_sim_mf_diagnostic.py --raw RAW --prepared PREPARED [--dim 16] [--epochs 1,3,10]
"""

from __future__ import annotations

import argparse
import itertools
import resource
import time
from pathlib import Path

import torch
from torch import nn

from recrl_cli.evaluation.metrics import auc
from recrl_cli.sim.data import load_kuairand_data
from recrl_cli.sim.truth import interaction_share, load_planted_truth, row_truth


class MF(nn.Module):
    def __init__(self, users: int, items: int, dim: int, init: float, tags: torch.Tensor | None = None,
                 tag_card: int = 0) -> None:  # fmt: skip
        super().__init__()
        self.p, self.q = nn.Embedding(users, dim), nn.Embedding(items, dim)
        # Optional tag rows: q_i = id row + sum of the item's tag rows (the planted v_i is mostly its tags').
        self.tags = nn.Embedding(tag_card, dim, padding_idx=0) if tags is not None else None
        self.register_buffer(
            "item_tags", tags if tags is not None else torch.zeros(items, 1, dtype=torch.long)
        )
        self.a, self.b = nn.Embedding(users, 1), nn.Embedding(items, 1)
        for e in (self.p, self.q, *([self.tags] if self.tags is not None else [])):
            nn.init.normal_(e.weight, 0.0, init)
        for e in (self.a, self.b):
            nn.init.zeros_(e.weight)
        self.c = nn.Parameter(torch.zeros(()))

    def item_vec(self, i: torch.Tensor) -> torch.Tensor:
        q = self.q(i)
        return q if self.tags is None else q + self.tags(self.item_tags[i]).sum(-2)

    def forward(self, u: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        """u, i [B] -> logits [B]."""
        return (self.p(u) * self.item_vec(i)).sum(-1) + self.a(u)[:, 0] + self.b(i)[:, 0] + self.c

    def grid(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """[U', I'] logits."""
        return self.p(users) @ self.item_vec(items).T + self.a(users) + self.b(items)[:, 0] + self.c


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--raw", type=Path, required=True)
    ap.add_argument("--prepared", type=Path, required=True)
    ap.add_argument("--dim", type=int, default=16)
    ap.add_argument("--batch", type=int, default=2048)
    ap.add_argument("--epochs", default="1,3,10")
    ap.add_argument("--lrs", default="0.001,0.01")
    ap.add_argument("--wds", default="0,0.0001")
    ap.add_argument("--inits", default="0.01,1.0")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--tags", default="0", help="comma list of 0/1: item vectors with tag rows")
    ap.add_argument("--row-l2", type=float, default=0.0, help="L2 on the batch's embedding rows (not Adam's)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    data = load_kuairand_data(args.prepared)
    rows = data.rows
    train = data.splits["train"]
    held = torch.cat([data.splits["val"], data.splits["test"]])
    truth_p = row_truth(args.raw, args.prepared, held)
    y_held = rows.labels[held, 0].float()
    print(
        f"train rows {len(train)}, held-out rows {len(held)}, truth click AUC {auc(truth_p[:, 0], y_held):.4f}"
    )
    planted = load_planted_truth(args.raw, args.prepared)
    users = torch.arange(1, planted.user_z.shape[0])
    items = torch.arange(1, planted.item_v.shape[0])
    true_grid = planted.click_logit(users, items)
    epochs = [int(e) for e in args.epochs.split(",")]
    print("| tags | lr | wd | init | epochs | steps | held AUC | user x item r2 | sd model / true | cpu s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for tag, lr, wd, init in itertools.product(
        [int(x) for x in args.tags.split(",")],
        [float(x) for x in args.lrs.split(",")], [float(x) for x in args.wds.split(",")],
        [float(x) for x in args.inits.split(",")],
    ):  # fmt: skip
        torch.manual_seed(0)
        model = MF(data.users.ids.shape[0], data.items.ids.shape[0], args.dim, init,
                   data.items.tags if tag else None, data.items.tag_cardinality)  # fmt: skip
        opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=wd)
        gen = torch.Generator().manual_seed(0)
        cpu0, done, steps = time.process_time(), 0, 0
        for target in epochs:
            while done < target:
                for idx in torch.randperm(len(train), generator=gen).split(args.batch):
                    r = train[idx]
                    u, i = rows.user[r], rows.item[r]
                    loss = nn.functional.binary_cross_entropy_with_logits(
                        model(u, i), rows.labels[r, 0].float()
                    )
                    if args.row_l2:
                        loss = (
                            loss
                            + args.row_l2 * (model.p(u).square().sum(-1) + model.q(i).square().sum(-1)).mean()
                        )
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    steps += 1
                done += 1
            with torch.no_grad():
                a = auc(model(rows.user[held], rows.item[held]), y_held)
                share = interaction_share(model.grid(users, items), true_grid)
            print(f"| {tag} | {lr:g} | {wd:g} | {init:g} | {done} | {steps} | {a:.4f} | {share['r2']:.3f} | "
                  f"{share['sd_model']:.2f} / {share['sd_true']:.2f} | {time.process_time() - cpu0:.0f} |",
                  flush=True)  # fmt: skip
    ru = resource.getrusage(resource.RUSAGE_SELF)
    print(f"process CPU {ru.ru_utime + ru.ru_stime:.0f} s")


if __name__ == "__main__":
    main()
