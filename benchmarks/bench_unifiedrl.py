"""Throughput of UnifiedRL's pieces on the CPU: fusion-env requests/s and offline-learner gradient steps/s.

Env setting (unifiedrl_hrlrec.md A6 step 4): KuaiRand-Pure vocabulary (7,583 items, random weights and logs from
:mod:`recrl_cli.sim.synthetic`: speed depends on sizes only), B users, K = 6, H = 100 history, candidates = top-100
retrieved + 20 random, the ground-truth URM at KuaiSim's sizes (enc 64) and a smaller ranker URM (enc 32). One
request = state + retrieval over every item + ranker scores of the candidates + Eq. 1 fusion + top-K + the
simulator's step (behaviours, play time, leave model).

Learner setting: the paper's sizes (batch 256, hidden 256-128; UnifiedRL q = 2 sets × m = 24 critics), state width
S = 3·32 + 9 (the ranker's state + profile), A = 10, on random transitions (speed depends on sizes only).

Timings are the best of ``--repeats`` windows (the machine is shared: other jobs only ever add time).

    python benchmarks/bench_unifiedrl.py --threads 1 --steps 5 --iters 5 --repeats 3
"""

from __future__ import annotations

import argparse
import os

import torch
from bench_kuaisim_env import best_rate, synthetic_data
from rich.console import Console
from rich.table import Table

from recrl_cli.mtf.env import FusionEnv
from recrl_cli.offline.batch import TransitionStore
from recrl_cli.offline.registry import LEARNERS, build_learner
from recrl_cli.sim.config import EnvConfig, SimulatorConfig
from recrl_cli.sim.environment import WholeSessionEnv, response_weights
from recrl_cli.sim.response_model import UserResponseModel
from recrl_cli.sim.synthetic import POSITIVE_RATE


def env_rate(data, users: int, args: argparse.Namespace) -> float:
    torch.manual_seed(0)
    sim = UserResponseModel(SimulatorConfig(history_length=100), data.users, data.items)
    ranker = UserResponseModel(SimulatorConfig(history_length=100, enc_dim=32, user_latent=16, item_latent=16),
                               data.users, data.items)  # fmt: skip
    cfg = EnvConfig(batch_users=users, slate_size=6)
    base = WholeSessionEnv(
        sim, cfg, data.rows, data.splits["train"], response_weights(torch.tensor(POSITIVE_RATE), True)
    )
    env = FusionEnv(base, ranker, retrieved=100, random=20)
    gen = torch.Generator().manual_seed(0)
    return users * best_rate(lambda: env.step(torch.rand(users, env.action_dim, generator=gen) * 2 - 1),
                             args.steps, args.repeats)  # fmt: skip


def learner_rate(name: str, args: argparse.Namespace) -> float:
    s, a, n = 3 * 32 + 9, 10, 20_000
    g = torch.Generator().manual_seed(0)
    mu = torch.rand(n, a, generator=g) * 1.4 - 0.7
    store = TransitionStore.from_tensors({
        "state": torch.randn(n, s, generator=g), "next_state": torch.randn(n, s, generator=g),
        "action": mu + (torch.rand(n, a, generator=g) * 0.3 - 0.15), "reward": torch.rand(n, 2, generator=g),
        "done": (torch.rand(n, generator=g) < 0.07).float(), "mu_bp": mu, "next_mu_bp": mu.roll(1, 0),
        "lower": torch.full((n, a), -0.15), "upper": torch.full((n, a), 0.15)})  # fmt: skip
    sizes = {"batch_size": 256, "gamma": 0.9}
    names = {f for f in LEARNERS[name].config.__dataclass_fields__}
    sizes.update({k: (256, 128) for k in ("actor_hidden", "critic_hidden", "hidden") if k in names})
    if name == "unifiedrl":
        sizes["critics"] = 24
    learner = build_learner(name, s, a, (1.0, 1.0), torch.device("cpu"), 0, **sizes)
    return best_rate(lambda: learner.update(store.sample(256, g)), args.iters, args.repeats, warmup=1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--users", type=str, default="32,128", help="Comma-separated B values for the env.")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    console = Console(width=220)
    console.print(f"threads={args.threads}, load average {os.getloadavg()[0]:.2f} at start")
    data = synthetic_data(users=max(int(u) for u in args.users.split(",")), history=100)
    table = Table(title="fusion env (Pure sizes, 120 candidates, K 6)")
    table.add_column("B users")
    table.add_column("requests/s", justify="right")
    for users in (int(u) for u in args.users.split(",")):
        table.add_row(str(users), f"{env_rate(data, users, args):,.0f}")
    console.print(table)
    table = Table(title="offline learners (batch 256, hidden 256-128; UnifiedRL 2 x 24 critics)")
    table.add_column("learner")
    table.add_column("updates/s", justify="right")
    for name in LEARNERS:
        table.add_row(name, f"{learner_rate(name, args):,.1f}")
    console.print(table)
    console.print(f"load average {os.getloadavg()[0]:.2f} at end")


if __name__ == "__main__":
    main()
