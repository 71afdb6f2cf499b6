"""Training iterations/s of the RL agents (HAC, DDPG, TD3, A2C) on the whole-session environment, on the CPU.

Setting (hac_kuaisim.md §5.4, §5.5): B = 32 users, slate K = 6, 100-step histories, the URM at KuaiSim's sizes
over KuaiRand-Pure's vocabulary (random weights and logs from :mod:`recrl_cli.sim.synthetic`: speed depends on
sizes only), each agent at its fixed defaults (policy encoder enc 32 / 3 layers, batch 128, buffer 100,000).
One iteration = what :meth:`recrl_cli.agents.loop.AgentLoop.step` does after warm-up: act with
exploration (policy forward, top-K over 5,659 items), one env step, a buffer write, one gradient step. The
update and the act+env parts are also timed on their own.

Timings are the best of ``--repeats`` windows (the machine is shared: other jobs only ever add time).

    python benchmarks/bench_agents.py --threads 1 --iters 5 --repeats 3
"""

from __future__ import annotations

import argparse
import os

import torch
from bench_kuaisim_env import best_rate, synthetic_data
from rich.console import Console
from rich.table import Table

from recrl_cli.agents import AGENTS, make_agent
from recrl_cli.agents.buffer import ReplayBuffer
from recrl_cli.sim.config import EnvConfig, SimulatorConfig
from recrl_cli.sim.environment import WholeSessionEnv, response_weights
from recrl_cli.sim.response_model import UserResponseModel
from recrl_cli.sim.synthetic import POSITIVE_RATE


def agent_rates(name: str, env: WholeSessionEnv, args: argparse.Namespace) -> dict[str, float]:
    """{iteration, update, act+env} per second for agent ``name``."""
    agent = make_agent(name, env)
    buffer = ReplayBuffer(agent.cfg.buffer_size)
    sampler = torch.Generator().manual_seed(0)

    def env_step(epsilon: float | None = None) -> None:
        obs = env.observation()
        action = agent.select(obs, explore=True, epsilon=epsilon)
        r = env.step(action.slate)
        buffer.add(obs, action.hyper, action.slate, r.reward, r.responses, r.done, r.next_observation)

    env.reset()
    for _ in range(args.warmup):  # a buffer to sample from, as after the warm-up phase
        env_step(1.0)

    def update() -> None:
        agent.update(buffer.sample(agent.cfg.batch_size, sampler))

    def iteration() -> None:
        env_step()
        update()

    return {"iteration": best_rate(iteration, args.iters, args.repeats, warmup=1),
            "update": best_rate(update, args.iters, args.repeats, warmup=1),
            "act+env": best_rate(env_step, args.iters, args.repeats, warmup=1)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=32, help="B, users simulated in parallel")
    parser.add_argument("--slate", type=int, default=6, help="K, slate size")
    parser.add_argument("--history", type=int, default=100, help="H, history length")
    parser.add_argument("--warmup", type=int, default=10, help="random env steps filling the buffer first")
    parser.add_argument("--iters", type=int, default=5, help="iterations per timing window")
    parser.add_argument("--repeats", type=int, default=3, help="timing windows per figure; the best is kept")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (shared 2-core machine: 1)")
    parser.add_argument("--agents", default=",".join(AGENTS), help="comma-separated agents to time")
    parser.add_argument("--log-users", type=int, default=500, help="users in the synthetic row table")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    data = synthetic_data(args.log_users, args.history)
    torch.manual_seed(0)
    model = UserResponseModel(SimulatorConfig(history_length=args.history), data.users, data.items)
    cfg = EnvConfig(batch_users=args.users, slate_size=args.slate)
    weights = response_weights(torch.tensor(POSITIVE_RATE), cfg.single_response)
    env = WholeSessionEnv(model, cfg, data.rows, data.splits["train"], weights)

    table = Table(title=f"Agents: B={args.users}, K={args.slate}, H={args.history}, batch 128, "
                        f"{torch.get_num_threads()} thread(s), load avg {load:.1f} at start")  # fmt: skip
    for col in ("agent", "iterations/s", "updates/s", "act+env steps/s"):
        table.add_column(col, justify="left" if col == "agent" else "right")
    for name in args.agents.split(","):
        r = agent_rates(name, env, args)
        table.add_row(name, f"{r['iteration']:.2f}", f"{r['update']:.2f}", f"{r['act+env']:.2f}")
    Console(width=140).print(table)
    print(f"best of {args.repeats} windows of {args.iters} calls each")


if __name__ == "__main__":
    main()
