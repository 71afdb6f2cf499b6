"""Cross-check recrl's IQL and TD3+BC against d3rlpy's on the same logged fusion data (issue 16, item 4).

Per seed: the protocol of ``recrl train mtf-iql`` up to its logs (CEM μ_bp⁰ on the benchmark world, one round of
Gaussian D1 logs, σ = ``gaussian_std``), then four learners train on exactly those transitions and on the same
minibatches (one index draw per update, shared): recrl IQL, recrl TD3+BC, d3rlpy IQL, d3rlpy TD3+BC, with every
hyperparameter both expose set to recrl's run config (:func:`d3rlpy_config`). Each policy then meets ES (μ_bp⁰)
in recrl's paired A/B (:func:`~recrl_cli.mtf.evaluate.ab_sessions`, the same env seeds for every policy), and on a
μ_bp⁰ test log the share of action dims within ±b of μ_bp and the mean |action − μ_bp|.

d3rlpy trains through its public one-step API, ``algo.update(TransitionMiniBatch)``, fed the rows recrl's learner
gets, rather than ``fit(MDPDataset)``: the same minibatches take sampling noise out of the comparison, and an
``MDPDataset`` episode that ends without a terminal gives its last transition a zero next observation, where the
logs hold the true next state of every row. d3rlpy's actions are tanh outputs in (−1, 1), recrl's normalised
action range, so no action scaler is set (asserted on every prediction). Needs the ``crosscheck`` extra.

    python benchmarks/bench_d3rlpy_crosscheck.py --world WORLD --seeds 5 --out xcheck.json
    python benchmarks/bench_d3rlpy_crosscheck.py --world WORLD --seeds 5 --init shared   # only the algorithms differ
    python benchmarks/bench_d3rlpy_crosscheck.py --from-json xcheck.json
    (WORLD: a folder from ``bench_unifiedrl_ab.py --build-world``; key=value arguments override the run config)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).parent))
from bench_unifiedrl_ab import train, world_dirs

from recrl_cli.evaluation.stats import mean_ci, paired_difference
from recrl_cli.mtf.algorithm import MTFAlgorithm, learner_overrides
from recrl_cli.mtf.collect import collect
from recrl_cli.mtf.evaluate import ab_sessions, premise
from recrl_cli.mtf.metrics import paired_pct_change
from recrl_cli.offline.base import seeded
from recrl_cli.offline.batch import TransitionBatch
from recrl_cli.offline.iql import ADVANTAGE_WEIGHT_MAX, IQLConfig
from recrl_cli.offline.nets import LOG_STD_MAX, LOG_STD_MIN
from recrl_cli.offline.registry import build_learner
from recrl_cli.offline.td3bc import TD3BCConfig

ALGOS = ("iql", "td3bc")
LABELS = {("recrl", "iql"): "recrl IQL", ("d3rlpy", "iql"): "d3rlpy IQL",
          ("recrl", "td3bc"): "recrl TD3+BC", ("d3rlpy", "td3bc"): "d3rlpy TD3+BC"}  # fmt: skip
#: What cannot be matched between the two implementations (printed with the table and in the notes).
UNMATCHED = (
    "IQL policy σ: recrl a free log σ (init 0, clamped to [−5, 2]); d3rlpy −5 + 7·sigmoid(p) (init −1.5, and "
    "Adam steps p, not log σ)",
    "IQL AWR weight: recrl uses V(s) from before the update's value step, d3rlpy the V just updated",
    "TD3+BC delay: d3rlpy updates the actor at steps 0, 2, 4, …; recrl at 2, 4, … (the same count)",
    "initial weights and the target-smoothing noise: same distributions, different random draws",
)


def import_d3rlpy() -> Any:
    """d3rlpy, or exit with one line naming the extra that installs it."""
    try:
        import d3rlpy
    except ImportError:
        raise SystemExit(
            "error: d3rlpy is not installed; install the crosscheck extra: pip install -e '.[crosscheck]'"
        ) from None
    return d3rlpy


def d3rlpy_config(d3rlpy: Any, algo: str, cfg: IQLConfig | TD3BCConfig) -> Any:
    """d3rlpy's config of ``algo`` with every hyperparameter it shares with recrl's ``cfg`` set to recrl's value.

    Networks: d3rlpy's default vector encoder (Linear → ReLU per hidden width, Q on concat(s, a)) with recrl's
    widths, two critics, min over them in targets. No observation / action / reward scaler: recrl uses states,
    actions in [−1, 1] and rewards as logged.
    """
    enc = d3rlpy.models.VectorEncoderFactory
    actor, critic = enc(hidden_units=list(cfg.actor_hidden)), enc(hidden_units=list(cfg.critic_hidden))
    common = {"batch_size": cfg.batch_size, "gamma": cfg.gamma, "tau": cfg.tau, "n_critics": 2,
              "actor_learning_rate": cfg.actor_lr, "critic_learning_rate": cfg.critic_lr,
              "actor_encoder_factory": actor, "critic_encoder_factory": critic}  # fmt: skip
    if algo == "iql":
        assert isinstance(cfg, IQLConfig)
        return d3rlpy.algos.IQLConfig(**common, value_encoder_factory=critic, expectile=cfg.expectile,
                                      weight_temp=cfg.temperature, max_weight=ADVANTAGE_WEIGHT_MAX)  # fmt: skip
    assert isinstance(cfg, TD3BCConfig)
    return d3rlpy.algos.TD3PlusBCConfig(**common, alpha=cfg.alpha, target_smoothing_sigma=cfg.policy_noise,
                                        target_smoothing_clip=cfg.noise_clip,
                                        update_actor_interval=cfg.policy_delay)  # fmt: skip


def d3rlpy_linears(module: nn.Module) -> list[nn.Linear]:
    """The Linear layers of a d3rlpy vector-encoder network in order: encoder layers, then its head (``_fc``:
    Q, V and the deterministic policy; ``_mu``: the Gaussian policy's mean)."""
    head = module._fc if hasattr(module, "_fc") else module._mu
    return [m for m in module._encoder._layers if isinstance(m, nn.Linear)] + [head]


@torch.no_grad()
def share_initial_weights(ours: Any, theirs: Any, algo: str) -> None:
    """Copy recrl learner ``ours``'s current weights into d3rlpy algo ``theirs`` (targets included), so the two
    start from the same networks and only the algorithms differ. The layouts: recrl's critic ``EnsembleQ``
    stores layer 0 as [S + A, E, H] over cat(s, a) (d3rlpy concatenates (s, a) in the same order) and later
    layers as [E, in, out]; d3rlpy's ``nn.Linear`` weights are [out, in]. IQL's σ: d3rlpy's parameter p gives
    log σ = −5 + 7·sigmoid(p), so p = logit((log σ + 5) / 7) reproduces recrl's log σ."""
    mods = theirs.impl._modules
    pairs: list[tuple[list[tuple[Tensor, Tensor]], list[nn.Linear]]] = [
        ([(w.T, b) for w, b in ours.critic.member(e)], d3rlpy_linears(q)) for e, q in enumerate(mods.q_funcs)
    ]
    actor = ours.policy.mean.net if algo == "iql" else ours.actor.net
    nets = [(actor, mods.policy)] + ([(ours.value, mods.value_func)] if algo == "iql" else [])
    for mlp, module in nets:
        layers = [*mlp.hidden, mlp.out]
        pairs.append(([(x.weight, x.bias) for x in layers], d3rlpy_linears(module)))
    for src, dst in pairs:
        assert len(src) == len(dst), "recrl and d3rlpy networks differ in depth"
        for (w, b), lin in zip(src, dst, strict=True):
            lin.weight.copy_(w)
            lin.bias.copy_(b.reshape(-1))
    if algo == "iql":
        u = (ours.policy.log_std.clamp(LOG_STD_MIN, LOG_STD_MAX) - LOG_STD_MIN) / (LOG_STD_MAX - LOG_STD_MIN)
        mods.policy._logstd.copy_(torch.logit(u.clamp(1e-6, 1 - 1e-6)).reshape(1, -1))
    else:
        mods.targ_policy.load_state_dict(mods.policy.state_dict())
    mods.targ_q_funcs.load_state_dict(mods.q_funcs.state_dict())


def to_minibatch(d3rlpy: Any, b: TransitionBatch, weights: Tensor) -> Any:
    """recrl rows as d3rlpy's ``TransitionMiniBatch``: state / next_state [n, S], action [n, A], the scalar reward
    reward @ weights [n, 1] (what recrl's baselines learn from), terminal = done [n, 1], one step per
    transition. ``next_actions`` (SARSA-style learners only) are zeros: IQL and TD3+BC never read them."""
    f32 = lambda t: np.ascontiguousarray(t.detach().cpu().numpy(), dtype=np.float32)  # noqa: E731
    n = len(b)
    return d3rlpy.dataset.TransitionMiniBatch(
        observations=f32(b.state), actions=f32(b.action), rewards=f32(b.scalar_reward(weights)[:, None]),
        next_observations=f32(b.next_state), next_actions=np.zeros_like(f32(b.action)),
        terminals=f32(b.done[:, None]), intervals=np.ones((n, 1), np.float32), transitions=[],
    )  # fmt: skip


class D3rlpyPolicy:
    """A trained d3rlpy algo as a fusion policy: state [B, S] -> its greedy action [B, A] (tanh mean), which
    lies in recrl's normalised action range (−1, 1) as it is; asserted, so a scaler slipped in shows."""

    def __init__(self, algo: Any) -> None:
        self.algo = algo

    def __call__(self, state: Tensor) -> Tensor:
        a = torch.as_tensor(self.algo.predict(state.detach().cpu().numpy()), device=state.device)
        assert a.shape == (state.shape[0], self.algo.impl.action_size) and bool((a.abs() <= 1.0).all())
        return a


def build_pair(d3rlpy: Any, algo: str, state_dim: int, action_dim: int, seed: int, init: str,
               **overrides: Any) -> tuple[Any, Any]:  # fmt: skip
    """recrl's learner ``algo`` (its config updated by ``overrides``) and d3rlpy's with the matched config;
    ``init="shared"``: d3rlpy starts from recrl's initial weights, ``"own"``: each library initialises its own
    (d3rlpy from the global RNG, seeded with ``seed``)."""
    ours = build_learner(algo, state_dim, action_dim, (1.0, 1.0), "cpu", seed, **overrides)
    theirs = d3rlpy_config(d3rlpy, algo, ours.cfg).create(device=False)
    with seeded(seed):
        theirs.create_impl((state_dim,), action_dim)
    if init == "shared":
        share_initial_weights(ours, theirs, algo)
    return ours, theirs


def train_all(
    alg: MTFAlgorithm, seed: int, init: str
) -> tuple[dict[tuple[str, str], Any], dict[tuple[str, str], float]]:
    """The four learners trained on ``alg.store`` with shared minibatches: key -> policy, key -> CPU s."""
    d3rlpy = import_d3rlpy()
    m, store = alg.m, alg.store
    assert store is not None
    ours, theirs = {}, {}
    for a in ALGOS:
        ours[a], theirs[a] = build_pair(d3rlpy, a, store.state_dim, store.action_dim, seed, init,
                                        **learner_overrides(a, m))  # fmt: skip
    cpu = dict.fromkeys(LABELS, 0.0)
    gen = torch.Generator().manual_seed(seed + 404)
    torch.manual_seed(seed)  # d3rlpy's TD3 target noise draws from the global RNG
    for _ in range(m.iterations):
        b = store.take(torch.randint(len(store), (m.batch_size,), generator=gen))
        for a in ALGOS:
            t = time.process_time()
            ours[a].update(b)
            cpu["recrl", a] += time.process_time() - t
            t = time.process_time()
            theirs[a].update(to_minibatch(d3rlpy, b, ours[a].weights))
            cpu["d3rlpy", a] += time.process_time() - t
    policies = {("recrl", a): ours[a].act for a in ALGOS} | {
        ("d3rlpy", a): D3rlpyPolicy(theirs[a]) for a in ALGOS
    }
    return policies, cpu


def run_seed(args: argparse.Namespace, seed: int, tmp: Path) -> dict[str, dict[str, float]]:
    """One seed: logs, the four learners, the paired A/B vs ES and the box statistics; label -> metrics."""
    prepared, sim, ranker = world_dirs(args.world)
    ranker = ranker or "taste-free"  # a world without a second simulator: the CLI's default ranker
    extra = [tuple(o.split("=", 1)) for o in args.overrides]
    t = time.process_time()
    # mtf-iql's protocol up to its logs: CEM μ_bp⁰ and one round of Gaussian D1 logs (mtf-td3bc logs the same).
    alg = train("mtf-iql", prepared, sim, ranker, tmp / "logs", seed, extra, until="train0")
    cpu_logs = time.process_time() - t
    policies, cpu_train = train_all(alg, seed, args.init)
    m = alg.m
    seeds = [m.eval_seed + i for i in range(m.eval_waves)]
    users = m.eval_users or m.batch_users
    t = time.process_time()
    es = ab_sessions(lambda s: alg.make_env(s, users), alg.mu_bp0, seeds)["reward"]
    ab = {
        k: ab_sessions(lambda s: alg.make_env(s, users), pol, seeds)["reward"] for k, pol in policies.items()
    }
    cpu_ab = (time.process_time() - t) / (1 + len(policies))
    test = collect(alg.make_env(m.eval_seed + 50_000), alg.mu_bp0, noise=None, width=0.0, bound=m.bounds,
                   steps=m.test_steps, generator=torch.Generator().manual_seed(seed))  # fmt: skip
    out: dict[str, dict[str, float]] = {"ES": {"reward_per_session": float(es.mean()), "logged_rows": len(alg.store),
                                               "cpu_logs": cpu_logs, "cpu_ab_per_policy": cpu_ab}}  # fmt: skip
    for key, pol in policies.items():
        pct, ci = paired_pct_change(ab[key], es)
        box = premise(test, pol, m.bounds)
        out[LABELS[key]] = {"reward_change_pct": pct, "reward_change_ci": ci,
                            "share_dims_in_box": box["premise/share_dims_in_box"],
                            "mean_abs_diff": box["premise/mean_abs_diff"], "cpu_train": cpu_train[key]}  # fmt: skip
    for a in ALGOS:  # the two implementations head to head on the same sessions
        pct, ci = paired_pct_change(ab["recrl", a], ab["d3rlpy", a])
        out[LABELS["recrl", a]] |= {"vs_d3rlpy_pct": pct, "vs_d3rlpy_ci": ci}
    return out


def fmt(values: list[float], digits: int = 2, sign: bool = True) -> str:
    mean, ci = mean_ci(values)
    return f"{mean:{'+' if sign else ''}.{digits}f} ± {ci:.{digits}f}"


def summarise(runs: list[dict[str, dict[str, float]]]) -> None:
    """Markdown tables: per learner mean ± 95 % t-CI over seeds; recrl − d3rlpy per algorithm, paired by seed."""
    n = len(runs)
    print(f"{n} seeds; ES reward per session {fmt([r['ES']['reward_per_session'] for r in runs], sign=False)}; "
          f"logged transitions per seed {runs[0]['ES']['logged_rows']:.0f}\n")  # fmt: skip
    print(
        "| learner | reward Δ % vs ES | per-run CI (mean) | dims within ±b of μ_bp | mean abs(a − μ_bp) | CPU s train |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for label in LABELS.values():
        col = lambda k, label=label: [r[label][k] for r in runs]  # noqa: E731
        print(f"| {label} | {fmt(col('reward_change_pct'))} | ±{np.mean(col('reward_change_ci')):.2f} | "
              f"{fmt(col('share_dims_in_box'), 3, False)} | {fmt(col('mean_abs_diff'), 3, False)} | "
              f"{np.mean(col('cpu_train')):.1f} |")  # fmt: skip
    print("\n| algorithm | recrl − d3rlpy: Δ % vs ES, paired by seed (p) | direct A/B recrl vs d3rlpy, % (per-run CI) | "
          "dims within ±b, recrl − d3rlpy | mean abs(a − μ_bp), recrl − d3rlpy |")  # fmt: skip
    print("| --- | ---: | ---: | ---: | ---: |")
    for a in ALGOS:
        ours, theirs = LABELS["recrl", a], LABELS["d3rlpy", a]
        cells = []
        for k, digits in (("reward_change_pct", 2), ("share_dims_in_box", 3), ("mean_abs_diff", 3)):
            d, ci, p = paired_difference([r[ours][k] for r in runs], [r[theirs][k] for r in runs])
            cells.append(
                f"{d:+.{digits}f} ± {ci:.{digits}f}" + (f" (p {p:.2f})" if k == "reward_change_pct" else "")
            )
        direct = f"{fmt([r[ours]['vs_d3rlpy_pct'] for r in runs])} (±{np.mean([r[ours]['vs_d3rlpy_ci'] for r in runs]):.2f})"
        print(f"| {a} | {cells[0]} | {direct} | {cells[1]} | {cells[2]} |")
    cpu = {k: np.mean([r["ES"][k] for r in runs]) for k in ("cpu_logs", "cpu_ab_per_policy")}
    print(
        f"\nCPU s per seed: CEM + logs {cpu['cpu_logs']:.1f}, A/B {cpu['cpu_ab_per_policy']:.1f} per policy (5 policies)"
    )
    print("Not matched: " + "; ".join(UNMATCHED))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--world", type=Path, default=None, help="A world from bench_unifiedrl_ab.py --build-world."
    )
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--init", choices=("own", "shared"), default="own",
                   help="own: each library initialises its networks (as a user runs them); shared: d3rlpy "
                   "starts from recrl's initial weights, so only the algorithms differ.")  # fmt: skip
    p.add_argument("--out", type=Path, default=None, help="Write every seed's metrics as JSON here.")
    p.add_argument(
        "--from-json", type=Path, default=None, help="Only print the tables of a saved --out file."
    )
    p.add_argument("overrides", nargs="*", help="key=value options of the mtf run config (iterations=…, …).")
    args = p.parse_args()
    if args.from_json:
        summarise(json.loads(args.from_json.read_text()))
        return
    import_d3rlpy()  # fail before the minutes of world building and CEM
    if args.seeds < 2:
        raise SystemExit("error: --seeds must be at least 2 (the table's CIs are over seeds)")
    torch.set_num_threads(args.threads)
    print(f"threads={args.threads}, load average {os.getloadavg()[0]:.2f} at start", flush=True)
    runs = []
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        if args.world is None:
            from bench_unifiedrl_compare import simulators

            args.world = Path(tmp) / "world"
            simulators(args.world, argparse.Namespace(users=200, items=300, impressions=20_000, sim_epochs=2,
                                                      threads=args.threads))  # fmt: skip
        for seed in range(args.seeds):
            runs.append(run_seed(args, seed, Path(tmp)))
            print(f"seed {seed}: " + ", ".join(f"{k} {v['reward_change_pct']:+.2f} %" for k, v in runs[-1].items()
                                               if "reward_change_pct" in v), flush=True)  # fmt: skip
            if args.out:  # after every seed, so a stopped benchmark keeps what it measured
                args.out.write_text(json.dumps(runs, indent=1))
    summarise(runs)
    print(
        f"{args.seeds} seeds in {time.perf_counter() - start:.0f} s wall, {time.process_time():.0f} CPU s; "
        f"load average {os.getloadavg()[0]:.2f} at end"
    )


if __name__ == "__main__":
    main()
