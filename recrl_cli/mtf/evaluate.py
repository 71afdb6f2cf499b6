"""Evaluation of fusion policies (A5, A6 step 8): the simulated A/B with common random numbers, MTF-GAUC on the
test log, NCIS on an exploration log with the exactly known density, and the premise check.

Simulated A/B: every policy acts deterministically in fresh envs built from the same seeds (``seeds``), so each
policy meets the same first users and consumes the same random streams (common random numbers). Every env row
runs exactly one session (the first user of the row, from its first request until it leaves, at most
``max_depth`` requests); session i of a policy is paired with session i of the reference (ES). Per session:
valid consumptions (plays > 10 s, the UVC analogue), watch minutes (UDT), reward (weighted, both parts), depth.

Shapes: n log rows, A action dims, K slate, k targets, E sessions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from recrl_cli.mtf.collect import Logs, Policy
from recrl_cli.mtf.env import FusionEnv, FusionStep, Request, item_rewards
from recrl_cli.mtf.fusion import ActionMap, fused_log_scores
from recrl_cli.mtf.metrics import importance_log_weights, mtf_gauc, ncis, sessions
from recrl_cli.sim.play_time import VALID_SECONDS
from recrl_cli.sim.rollout import play

AB_METRICS = ("valid_consumption", "watch_minutes", "reward", "depth")


@torch.no_grad()
def ab_sessions(make_env: Callable[[int], FusionEnv], policy: Policy, seeds: Sequence[int],
                max_depth: int = 200) -> dict[str, Tensor]:  # fmt: skip
    """One session per env row and seed: metric name -> [E] with E = B·len(seeds) (see the module docstring)."""
    per_seed = [first_sessions(make_env(seed), policy, max_depth) for seed in seeds]
    return {k: torch.cat([s[k] for s in per_seed]) for k in AB_METRICS}


def first_sessions(env: FusionEnv, policy: Policy, max_depth: int) -> dict[str, Tensor]:
    """The session of the first user of every env row, at most ``max_depth`` requests: metric name -> [B]."""
    alive = torch.ones(env.batch, dtype=torch.bool, device=env.device)  # the row still holds its first user
    acc = {k: torch.zeros(env.batch, device=env.device) for k in AB_METRICS}

    def observe(req: Request, action: Tensor, step: FusionStep) -> bool:
        live = alive.float()
        acc["valid_consumption"] += live * (step.play > VALID_SECONDS).float().sum(1)
        acc["watch_minutes"] += live * step.play.sum(1) / 60.0
        acc["reward"] += live * step.reward.sum(1)
        acc["depth"] += live
        alive.logical_and_(~step.done)
        return not bool(alive.any())  # every first session has ended: stop early

    play(env, lambda req: policy(req.state), max_depth, observe)
    return acc


@torch.no_grad()
def log_mtf_gauc(logs: Logs, policy: Policy, action_map: ActionMap, weights: Tensor, c: float = 1.0,
                 by: str = "user") -> float:  # fmt: skip
    """MTF-GAUC of ``policy`` on a test log: its fused score of every shown item, label play > 10 s, sample weight
    ω = r + c (r the item's reward, both parts) floored at 0.1 (hate makes r negative; ω must stay > 0).

    ``by="user"`` (A5's groups): pairs of one user's shown items, across all of that user's requests. Eq. 1's
    score is a within-request ranking score whose level moves with the request's action (a personalised policy
    changes its powers with the state), so these cross-request pairs also score how the action's level tracks
    the user's engagement over the session, not only the ranking. ``by="request"``: pairs within one slate
    only, the pure ranking quality (UNIFIEDRL_NOTES.md, "Why MTF-GAUC is below 0.5").
    """
    if by not in ("user", "request"):
        raise ValueError(f"MTF-GAUC groups are 'user' or 'request', got {by!r}")
    powers, biases = action_map(policy(logs.state))
    k = logs.preds.shape[-1]
    shown = logs.preds.gather(1, logs.slate[..., None].expand(-1, -1, k))  # [n, K, k]
    score = fused_log_scores(shown, powers, biases)  # [n, K]
    watch, rest = item_rewards(logs.responses, logs.play, weights.to(logs.play.device))
    omega = (watch + rest + c).clamp(min=0.1)
    key = logs.user if by == "user" else torch.arange(len(logs), device=score.device)
    group = key[:, None].expand_as(score)
    return mtf_gauc(group.reshape(-1).cpu().numpy(), score.reshape(-1).cpu().numpy(),
                    (logs.play > VALID_SECONDS).reshape(-1).cpu().numpy(), omega.reshape(-1).cpu().numpy())  # fmt: skip


@torch.no_grad()
def log_ncis(logs: Logs, policy: Policy, *, batch: int, noise: str, width: float, kernel: float,
             cap: float) -> dict[str, float]:  # fmt: skip
    """NCIS of ``policy`` on an exploration log: per complete session (ρ̄ = min(Π_t w_t, c), G = Σ_t r_t) and per
    request (ρ̄ = min(w_t, c), G = r_t); with their effective sample sizes."""
    logw = importance_log_weights(
        logs.action, policy(logs.state), logs.action - logs.mu_bp, noise, width, kernel
    )
    r = logs.reward.sum(1)
    sid, n_sessions = sessions(logs.slot, logs.step, logs.done, batch)
    keep = sid >= 0
    out = {"ncis/sessions": float(n_sessions)}
    if n_sessions:
        s_logw = torch.zeros(n_sessions, dtype=torch.float64, device=r.device).index_add_(
            0, sid[keep], logw[keep].double()
        )
        s_ret = torch.zeros(n_sessions, dtype=torch.float64, device=r.device).index_add_(
            0, sid[keep], r[keep].double()
        )
        out["ncis/session_return"], out["ncis/session_ess"] = ncis(s_logw, s_ret, cap)
    out["ncis/request_reward"], out["ncis/request_ess"] = ncis(logw, r, cap)
    return out


@torch.no_grad()
def premise(logs: Logs, policy: Policy, bound: float) -> dict[str, float]:
    """The Figure-2 statistic: δ = |μ_new(s) − μ_bp(s)| over the log's states and dims."""
    delta = (policy(logs.state) - logs.mu_bp).abs()
    q = torch.quantile(delta.reshape(-1).float().cpu(), torch.tensor([0.5, 0.9]))
    return {"premise/share_dims_in_box": float((delta <= bound).float().mean()),
            "premise/share_states_in_box": float((delta <= bound).all(-1).float().mean()),
            "premise/mean_abs_diff": float(delta.mean()), "premise/p50_abs_diff": float(q[0]),
            "premise/p90_abs_diff": float(q[1])}  # fmt: skip
