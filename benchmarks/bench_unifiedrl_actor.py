"""Does UnifiedRL's actor chase critic noise inside the box? Q at the policy's action vs Q at the logged actions,
and the paired A/B of the same policy vs ES, for a few actor settings (``--variants``, ``;``-separated lists of
``key=value`` model options), over ``--seeds`` seeds, no PTM (one round: the actor objective alone).

    python benchmarks/bench_unifiedrl_actor.py --world WORLD --seeds 2 \
        --variants "uncertainty=0.2;uncertainty=2" ptm=false
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_unifiedrl_ab import world_dirs

from recrl_cli.cli.resolve import run_config_from_cli
from recrl_cli.mtf.algorithm import MTFAlgorithm
from recrl_cli.mtf.evaluate import ab_sessions, premise
from recrl_cli.mtf.metrics import paired_pct_change
from recrl_cli.sim.data import load_kuairand_data


def run(prepared, sim, ranker, logs, seed, pairs) -> dict[str, float]:
    pairs = [("simulator", str(sim)), ("ranker", str(ranker)), ("logs_dir", str(logs)), *pairs]
    cfg = run_config_from_cli("unifiedrl", config=None, sets=None, extra=pairs, seed=seed, device="cpu",
                              data_dir=prepared)  # fmt: skip
    alg = MTFAlgorithm("unifiedrl", cfg, load_kuairand_data(prepared), torch.device("cpu"))
    last: dict[str, float] = {}
    for stage in alg.stages():
        for i in range(stage.num_rows):
            out = stage.update(torch.tensor([i]))
            if stage.name.startswith("train"):
                last = out
        if stage.on_end is not None:
            stage.on_end()
    store = alg.store.all()
    learner = alg.learner
    with torch.no_grad():  # Q of the whole log: at the logged actions and at the policy's
        coef = learner.set_coef[:, None]
        q_log = (coef * learner.sets(learner.critic(store.state, store.action)).mean(1)).sum(0).mean()
        q_pol = (
            (coef * learner.sets(learner.critic(store.state, learner.act(store.state))).mean(1)).sum(0).mean()
        )
    seeds = [alg.m.eval_seed + i for i in range(alg.m.eval_waves)]
    policy = alg.policies()["policy"]
    a = ab_sessions(lambda s: alg.make_env(s, alg.m.eval_users), policy, seeds)
    b = ab_sessions(lambda s: alg.make_env(s, alg.m.eval_users), alg.mu_bp0, seeds)
    pct, ci = paired_pct_change(a["reward"], b["reward"])
    box = premise(alg.logs[0], policy, alg.m.bounds)["premise/share_dims_in_box"]
    return {"gap_pct": float(100 * (q_pol / q_log - 1)), "q_std": last.get("q_std", float("nan")),
            "ab": pct, "ab_ci": ci, "in_box": box}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--world", type=Path, required=True)
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--variants", default="uncertainty=0.2")
    p.add_argument("overrides", nargs="*")
    args = p.parse_args()
    torch.set_num_threads(1)
    prepared, sim, ranker = world_dirs(args.world)
    ranker = ranker or "taste-free"  # a world without a second simulator: the CLI's default ranker
    shared = [tuple(o.split("=", 1)) for o in args.overrides]
    print(
        "| variant | seed | Q(s, μ(s)) vs Q(s, a_logged) % | ensemble std | reward Δ % vs ES ± CI | dims in box | CPU s |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    with tempfile.TemporaryDirectory() as tmp:
        for variant in args.variants.split(";"):
            own = [tuple(o.split("=", 1)) for o in variant.split(",") if o]
            for seed in range(args.seeds):
                t = time.process_time()
                r = run(prepared, sim, ranker, Path(tmp), seed, [*shared, *own])
                cpu = time.process_time() - t
                print(f"| {variant} | {seed} | {r['gap_pct']:+.1f} | {r['q_std']:.3f} | {r['ab']:+.2f} ± {r['ab_ci']:.2f} "
                      f"| {r['in_box']:.2f} | {cpu:.0f} |", flush=True)  # fmt: skip
    rusage = resource.getrusage(resource.RUSAGE_SELF)
    print(f"total CPU s {rusage.ru_utime + rusage.ru_stime:.0f}")


if __name__ == "__main__":
    main()
