"""The seed article's claims in the planted world (issue 15): HAC vs DDPG / TD3 / A2C and HAC's ablations, with
seeds and paired 95 % CIs, where the best slate of each user is known and no constant slate is good.

    python benchmarks/bench_agents_planted.py --seeds 5 [--variants hac,ddpg,...] [--iterations 150]

The world is :mod:`recrl_cli.agents.planted` (4 taste groups; popular ≈ random); the agents are the small
networks of the learning test (``tests/test_agents_learn.py``: batch 64, behaviour lr 1e-2, no dropout) and
otherwise at their defaults. Every run: agent seed = env seed = torch seed = s; 20 warm-up steps, the given
iterations, a 40-step evaluation of agent / random / popular / oracle on the users of the fixed eval seed.
Prints one row per variant: mean ± 95 % t-CI over seeds of the gap fraction and the paired difference to the
first variant on the same seeds, and the CPU seconds per run.
"""

from __future__ import annotations

import argparse
import time

import torch

from recrl_cli.agents import make_agent
from recrl_cli.agents.config import agent_config
from recrl_cli.agents.loop import AgentLoop, LoopConfig
from recrl_cli.agents.planted import planted_env
from recrl_cli.evaluation.stats import mean_ci

SMALL = dict(latent=8, enc_dim=8, n_heads=2, ff_dim=16, n_layers=1, action_hidden=(16,), critic_hidden=(16,),
             inverse_hidden=(16,), batch_size=64, buffer_size=256, behavior_lr=1e-2, dropout=0.0)  # fmt: skip
VARIANTS = {
    "hac": ("hac", {}),
    "hac behavior_coef=0": ("hac", {"behavior_coef": 0.0}),
    "hac hyper_actor_coef=0": ("hac", {"hyper_actor_coef": 0.0}),
    "hac noise_std=0.01": ("hac", {"noise_std": 0.01}),
    "hac noise_std=0.3": ("hac", {"noise_std": 0.3}),
    "hac effect_action=sample τ=0.3": ("hac", {"effect_action": "sample", "sample_temperature": 0.3}),
    "hac effect_action=sample τ=1": ("hac", {"effect_action": "sample", "sample_temperature": 1.0}),
    "ddpg": ("ddpg", {}),
    "td3": ("td3", {}),
    "a2c": ("a2c", {}),
}


def run(agent: str, overrides: dict, seed: int, iterations: int) -> tuple[dict, float]:
    """(policies' metrics, CPU seconds) of one run."""
    started = time.process_time()
    torch.manual_seed(seed)
    env = planted_env(seed=seed)
    model = make_agent(agent, env, agent_config(agent, **{**SMALL, **overrides}), seed=seed)
    loop = AgentLoop(model, env, LoopConfig(warmup_steps=20, iterations=iterations, eval_steps=40, seed=seed))
    loop.warm_up()  # the calls of recrl train's interact stage
    for _ in range(iterations):
        loop.step()
    res = loop.result()
    return res.policies, time.process_time() - started


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--iterations", type=int, default=150)
    p.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated names of VARIANTS")
    args = p.parse_args()
    torch.set_num_threads(1)
    names = args.variants.split(",")
    print(f"| variant | seeds | gap_fraction | gap_vs_popular | paired Δ gap vs {names[0]} | CPU s/run |")
    print("|---|---:|---:|---:|---:|---:|")
    first: list[float] | None = None
    refs = None
    for name in names:
        agent, overrides = VARIANTS[name]
        gaps, vs_pop, cpu = [], [], []
        for seed in range(args.seeds):
            policies, seconds = run(agent, overrides, seed, args.iterations)
            gaps.append(policies["agent"]["gap_fraction"])
            vs_pop.append(policies["agent"]["gap_vs_popular"])
            cpu.append(seconds)
            refs = {k: policies[k]["total_reward"] for k in ("random", "popular", "oracle")}
        first = first or gaps
        cells = [f"{m:.3f} ± {c:.3f}" for m, c in (mean_ci(gaps), mean_ci(vs_pop))]
        if gaps is first:
            cells.append("—")
        else:
            m, c = mean_ci([g - f for g, f in zip(gaps, first, strict=True)])
            cells.append(f"{m:+.3f} ± {c:.3f}")
        print(
            f"| {name} | {args.seeds} | " + " | ".join(cells) + f" | {sum(cpu) / len(cpu):.1f} |", flush=True
        )
    print(f"references (total reward, the same users in every run): {refs}")


if __name__ == "__main__":
    main()
