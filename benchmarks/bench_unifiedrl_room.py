"""How much of the fusion room a learned fusion policy reaches, and whether its critics see that room.

For each seed, trains one fusion run (``recrl train <algo>`` through the same stages the CLI runs; quick defaults
unless ``key=value`` overrides; the ranker of ``--ranker``, the CLI's taste-free view by default), then replays
μ_bp⁰ (ES) for ``--steps`` requests of ``--users`` fresh users (env seed ``eval_seed`` + 70,000) and at every
request scores, by the simulator's penalised expected reward of the slate each action ranks (the headroom
benchmark's :func:`recrl_cli.mtf.calibration.slate_value_penalised`, no sampling noise):

- the zero action (every power 1: the plain product), μ_bp⁰(s) (ES), the learned policy π(s);
- ``best of M``: the best of the calibration's M fixed fusion actions per request (the headroom benchmark's
  "best fusion per request", whole action space);
- ``best in box``: the best of ``--box-samples`` actions drawn uniformly in μ_bp⁰(s) ± b (what a policy that
  stays in the logged box can reach);
- ``fixed of M``: the one of the M actions best on average (chosen on other users), and ``picked linear / mlp``:
  per request the action among the M that a regression from the learners' state to the M actions' values
  (fitted with the simulator's exact values on ``--fit-steps`` requests of other users, :func:`fit_picker`)
  predicts best: how much of the per-request room the state reveals, with no sampling noise and no bootstrap.

It prints the mean value per request of each, the share of the room (best − ES) that π reaches, and, for a
UnifiedRL run, whether the critics rank actions as the simulator does: per request, Spearman's ρ between the
set-weighted ensemble-mean Q(s, a) and the simulator's expected reward of a's slate over the in-box samples, the
simulator value of the critics' argmax, and the Q gap Q(s, π(s)) / Q(s, μ_bp⁰(s)) − 1 against the true value gap.
Q is a discounted return and the value an immediate expected reward: the fusion action changes the future only
through the slate shown, so within one state the immediate value is what separates actions (the ranking, not
the level, is compared).

    python benchmarks/bench_unifiedrl_room.py --world WORLD --seeds 3 --algo unifiedrl
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import Tensor

sys.path.insert(0, str(Path(__file__).parent))
from bench_unifiedrl_ab import train

from recrl_cli.mtf.algorithm import MTFAlgorithm
from recrl_cli.mtf.calibration import fusion_candidates, fusion_values, slate_value_penalised
from recrl_cli.mtf.env import FusionEnv
from recrl_cli.mtf.ranker import TASTE_FREE


@torch.no_grad()
def values_of(env: FusionEnv, actions: Tensor) -> Tensor:
    """Penalised expected reward of the slate each user's own action ranks: actions [B, A] -> [B]."""
    req = env.request()
    unit = env.sim.item_unit[req.candidates + 1]  # [B, C, d]
    rho = env.sim.cfg.item_correlation
    return slate_value_penalised(env.expected_reward(req), unit, env.rank(actions), rho)


@torch.no_grad()
def q_value(learner, state: Tensor, actions: Tensor) -> Tensor:
    """UnifiedRL's set-weighted ensemble-mean Q (what its actor maximises, without the std term) of ``actions``
    [P·B, A] (P blocks of B, one per sample) at ``state`` [B, S] repeated per block -> [P·B]."""
    s = state.repeat(len(actions) // len(state), 1)
    return (learner.set_coef[:, None] * learner.sets(learner.critic(s, actions)).mean(1)).sum(0)


def spearman(x: Tensor, y: Tensor) -> Tensor:
    """Rank correlation per row: x, y [B, P] -> [B] (ties broken by position; continuous values have none)."""
    rx = x.argsort(1).argsort(1).float()
    ry = y.argsort(1).argsort(1).float()
    rx, ry = rx - rx.mean(1, keepdim=True), ry - ry.mean(1, keepdim=True)
    return (rx * ry).sum(1) / (rx.norm(dim=1) * ry.norm(dim=1)).clamp(min=1e-12)


@torch.no_grad()
def choice_values(env: FusionEnv, choices: Tensor, policy, steps: int) -> tuple[Tensor, Tensor]:
    """Replay ``policy`` for ``steps`` requests; per request the states [n, S] and the simulator's value of the
    slate each of ``choices`` [M, A] ranks, [n, M] (n = steps × B)."""
    states, values = [], []
    for _ in range(steps):
        req = env.request()
        states.append(req.state)
        values.append(fusion_values(env, choices))
        env.step(policy(req.state))
    return torch.cat(states), torch.cat(values)


def fit_picker(states: Tensor, values: Tensor, hidden: int, iters: int, seed: int):
    """A picker fitted with exact labels: an MLP (one hidden layer of ``hidden``; 0 = linear) from the
    standardised state [n, S] to each choice's value minus the request's mean value [n, M] (mean squared error,
    full-batch Adam). Returns state [n', S] -> index of the predicted best choice [n']: what a policy that reads
    only the learners' state could pick if it knew the simulator's expected rewards (no sampling noise, no
    bootstrapping), i.e. the part of the per-request room that the state makes visible."""
    mu, sd = states.mean(0), states.std(0).clamp(min=1e-6)
    target = values - values.mean(1, keepdim=True)
    scale = target.std().clamp(min=1e-9)
    torch.manual_seed(seed)
    width = states.shape[1]
    out = values.shape[1]
    net = (torch.nn.Sequential(torch.nn.Linear(width, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, out))
           if hidden else torch.nn.Linear(width, out))  # fmt: skip
    opt = torch.optim.Adam(net.parameters(), lr=3e-3, weight_decay=1e-4)
    x = (states - mu) / sd
    with torch.enable_grad():
        for _ in range(iters):
            loss = torch.nn.functional.mse_loss(net(x), target / scale)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return lambda s: net((s - mu) / sd).argmax(1)


@torch.no_grad()
def room(
    alg: MTFAlgorithm,
    users: int,
    steps: int,
    box_samples: int,
    fit_steps: int,
    widths: tuple[float, ...] = (),
) -> dict[str, float]:
    """The figures of the module docstring for one trained run (see there); ``widths``: half-widths w of further
    boxes μ_bp⁰(s) ± w whose best of ``box_samples`` is reported too (``best_in_box_w<w>``: the room vs b)."""
    m, seed = alg.m, alg.cfg.train.seed
    gen = torch.Generator().manual_seed(seed + 70_000)
    es, pol = alg.mu_bp0, alg.policies()["policy"]
    zero = torch.zeros(alg.env.action_dim)
    choices = fusion_candidates(zero, 0)  # [M, A]: the headroom benchmark's set (zero action + uniform ones)
    # The pickers learn on other users (env seed + 80,000) than the requests they are scored on (+ 70,000).
    fit_s, fit_v = choice_values(alg.make_env(m.eval_seed + 80_000, users), choices, es, fit_steps)
    pickers = {f"picked_{name}": fit_picker(fit_s, fit_v, hidden, 2000, seed)
               for name, hidden in (("linear", 0), ("mlp", 64))}  # fmt: skip
    env = alg.make_env(m.eval_seed + 70_000, users)
    learner = alg.center if (alg.guard and alg.center is not None) else alg.learner
    critic = getattr(learner, "critic", None) if getattr(learner, "name", "") == "unifiedrl" else None
    acc: dict[str, list[Tensor]] = {}
    best_column = fit_v.mean(0).argmax()  # the best fixed fusion among the M choices, chosen on the fit users

    def add(k: str, v: Tensor) -> None:
        acc.setdefault(k, []).append(v.float().reshape(-1))

    for _ in range(steps):
        req = env.request()
        s = req.state
        a_es = es(s)
        a_pol = pol(s)
        v_zero = values_of(env, zero.expand(env.batch, -1))
        v_es, v_pol = values_of(env, a_es), values_of(env, a_pol)
        v_choices = fusion_values(env, choices)  # [B, M]
        v_best = v_choices.max(1).values
        add("fixed_of_m", v_choices[:, best_column])
        for k, pick in pickers.items():
            add(k, v_choices.gather(1, pick(s)[:, None]).squeeze(1))
        offsets = (torch.rand(box_samples, *a_es.shape, generator=gen) * 2 - 1) * m.bounds  # [P, B, A]
        box = (a_es[None] + offsets).clamp(-1.0, 1.0)
        v_box = torch.stack([values_of(env, a) for a in box], 1)  # [B, P]
        for k, v in (("zero", v_zero), ("es", v_es), ("policy", v_pol), ("best_of_m", v_best),
                     ("best_in_box", v_box.max(1).values), ("box_mean", v_box.mean(1))):  # fmt: skip
            add(k, v)
        for w in widths:
            wide = (a_es[None] + (torch.rand(box_samples, *a_es.shape, generator=gen) * 2 - 1) * w).clamp(
                -1.0, 1.0
            )
            add(f"best_in_box_w{w:g}", torch.stack([values_of(env, a) for a in wide], 1).max(1).values)
        add("policy_in_box", ((a_pol - a_es).abs() <= m.bounds + 1e-6).float().mean(1))
        if critic is not None:
            q_box = q_value(learner, s, box.reshape(-1, box.shape[-1])).view(box_samples, -1).T  # [B, P]
            add("q_spearman", spearman(q_box, v_box))
            add("v_at_q_argmax", v_box.gather(1, q_box.argmax(1, keepdim=True)).squeeze(1))
            q_es, q_pol = q_value(learner, s, a_es), q_value(learner, s, a_pol)
            add("q_gap", q_pol / q_es - 1.0)
            add("q_es", q_es)
        env.step(a_es)
    mean = {k: float(torch.cat(v).mean()) for k, v in acc.items()}
    out = dict(mean)
    for top in ("best_of_m", "best_in_box", "fixed_of_m", *pickers, *(f"best_in_box_w{w:g}" for w in widths)):
        out[f"{top}_vs_es_pct"] = 100 * (mean[top] / mean["es"] - 1)
    out["policy_vs_es_pct"] = 100 * (mean["policy"] / mean["es"] - 1)
    out["zero_vs_es_pct"] = 100 * (mean["zero"] / mean["es"] - 1)
    out["policy_share_of_box_room"] = (mean["policy"] - mean["es"]) / (mean["best_in_box"] - mean["es"])
    out["policy_share_of_room"] = (mean["policy"] - mean["es"]) / (mean["best_of_m"] - mean["es"])
    if critic is not None:
        out["true_gap_pct"] = out["policy_vs_es_pct"]
        out["q_gap_pct"] = 100 * mean["q_gap"]
        out["q_argmax_vs_es_pct"] = 100 * (mean["v_at_q_argmax"] / mean["es"] - 1)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--world", type=Path, required=True, help="a world of bench_unifiedrl_compare / _ab")
    p.add_argument("--algo", default="unifiedrl", help="the fusion run: unifiedrl, mtf-iql, mtf-ddpg, ...")
    p.add_argument("--ranker", default=TASTE_FREE, help="taste-free (default), self, or a ranker run")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--users", type=int, default=64)
    p.add_argument("--steps", type=int, default=20, help="requests per user row replayed with μ_bp⁰")
    p.add_argument("--box-samples", type=int, default=32)
    p.add_argument(
        "--widths", default="", help="comma-separated half-widths of further boxes to search (e.g. 0.3,1)"
    )
    p.add_argument(
        "--fit-steps", type=int, default=40, help="requests per row the state -> best-fusion pickers learn on"
    )
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("overrides", nargs="*", help="key=value model options of the trained run")
    args = p.parse_args()
    torch.set_num_threads(1)
    runs = sorted((args.world / "runs").glob("simulator-*"), key=lambda q: q.stat().st_mtime)
    extra = [tuple(o.split("=", 1)) for o in args.overrides]
    per_seed = []
    for seed in range(args.seeds):
        t0 = time.process_time()
        alg = train(
            args.algo, args.world / "prepared", runs[0], args.ranker, args.world / "logs", seed, extra
        )
        t1 = time.process_time()
        widths = tuple(float(w) for w in args.widths.split(",") if w.strip())
        out = room(alg, args.users, args.steps, args.box_samples, args.fit_steps, widths)
        out.update(train_cpu_s=t1 - t0, room_cpu_s=time.process_time() - t1)
        per_seed.append(out)
        print(f"seed {seed}: " + ", ".join(f"{k} {v:.4g}" for k, v in out.items()), flush=True)
    print(f"\n{args.algo}, {args.seeds} seeds: mean (sd over seeds)")
    for k in per_seed[0]:
        vals = [o[k] for o in per_seed]
        sd = statistics.stdev(vals) if len(vals) > 1 else float("nan")
        print(f"  {k:28s} {statistics.fmean(vals):+.4f} ({sd:.4f})")
    if args.json:
        args.json.write_text(json.dumps(per_seed, indent=1))


if __name__ == "__main__":
    main()
