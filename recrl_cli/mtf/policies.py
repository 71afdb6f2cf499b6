"""The behaviour policy μ_bp (ES/CEM-tuned, personalised), its exploration noises, and the CEM search.

μ_bp(s) = scale · tanh(b + W·f(s)), f(s) = the last :data:`PROFILE_DIM` state columns (history feedback means,
history fill, depth; see :mod:`recrl_cli.mtf.env`), mirroring the paper's ES baseline (personalised fusion
weights from user-profile features, tuned by mutation and selection). ``scale`` (default 0.7) keeps
μ_bp ± b inside [−1, 1] for every bound b <= 1 − scale, so uniform exploration is never clipped and its density
is exactly (2b)^−A (NCIS needs it).

Exploration (A3, Eq. 3), drawn independently per request and per dimension and clipped to [−1, 1]:
    gaussian  a = clip(μ_bp(s) + N(0, σ²))        D1, σ = 0.2
    uniform   a = clip(μ_bp(s) + U(−b, b))        D2 / D3, b = 0.15

CEM: a population of P parameter vectors θ ~ N(m, diag(σ²)); user row i of the env acts with member i mod P for
``steps`` requests (one batched rollout for the whole population); the top ``elite`` share by mean reward per
request refits m and σ. Shapes: B users, A action dims, F = PROFILE_DIM, P population.
"""

from __future__ import annotations

import torch
from torch import Tensor

from recrl_cli.mtf.env import PROFILE_DIM, FusionEnv, FusionStep, Request
from recrl_cli.sim.rollout import play

NOISES = ("gaussian", "uniform")


class LinearFusionPolicy:
    """μ_bp: parameters θ [P, A, F + 1] (row-wise bias last); ``member`` [B] picks each user's row."""

    def __init__(self, theta: Tensor, scale: float) -> None:
        self.theta, self.scale = theta, scale

    @classmethod
    def zeros(cls, action_dim: int, scale: float, device: torch.device) -> LinearFusionPolicy:
        return cls(torch.zeros(1, action_dim, PROFILE_DIM + 1, device=device), scale)

    def __call__(self, state: Tensor, member: Tensor | None = None) -> Tensor:
        """state [B, S] -> action [B, A] in scale·(−1, 1)."""
        f = torch.cat([state[:, -PROFILE_DIM:], torch.ones_like(state[:, :1])], 1)  # [B, F + 1]
        theta = self.theta[0].expand(state.shape[0], -1, -1) if member is None else self.theta[member]
        return self.scale * torch.tanh(torch.einsum("baf,bf->ba", theta, f))

    def act(self, state: Tensor) -> Tensor:
        return self(state)


def explore(center: Tensor, noise: str, width: float, generator: torch.Generator) -> Tensor:
    """Exploration action around ``center`` [B, A]: Gaussian σ = ``width`` or uniform ±``width``, clipped."""
    if noise == "gaussian":
        eps = torch.randn(center.shape, generator=generator, device=center.device) * width
    elif noise == "uniform":
        eps = (torch.rand(center.shape, generator=generator, device=center.device) * 2.0 - 1.0) * width
    else:
        raise ValueError(f"unknown exploration noise {noise!r}; choose one of {', '.join(NOISES)}")
    return (center + eps).clamp(-1.0, 1.0)


class CEM:
    """Cross-entropy method over :class:`LinearFusionPolicy` parameters (see the module docstring)."""

    def __init__(self, env: FusionEnv, *, population: int, steps: int, elite: float, init_std: float,
                 scale: float, generator: torch.Generator, min_std: float = 0.05) -> None:  # fmt: skip
        if not 1 <= population <= env.batch:
            raise ValueError(f"CEM population must be in [1, batch_users = {env.batch}], got {population}")
        if not 0.0 < elite <= 1.0:
            raise ValueError(f"CEM elite share must be in (0, 1], got {elite}")
        self.env, self.population, self.steps, self.scale, self.generator = (
            env,
            population,
            steps,
            scale,
            generator,
        )
        self.n_elite = max(1, round(elite * population))
        # A floor on σ (Szita & Lőrincz's noisy CEM): with noisy scores the plain refit collapses σ to ~0 within a
        # few generations, long before the mean has converged.
        self.min_std = min_std
        shape = (env.action_dim, PROFILE_DIM + 1)
        self.mean = torch.zeros(shape, device=env.device)
        self.std = torch.full(shape, init_std, device=env.device)
        self.member = torch.arange(env.batch, device=env.device) % population

    def policy(self) -> LinearFusionPolicy:
        """The current mean as a deterministic policy (μ_bp)."""
        return LinearFusionPolicy(self.mean[None].clone(), self.scale)

    @torch.no_grad()
    def iterate(self) -> dict[str, float]:
        """One CEM generation: sample, roll the population out in the env, refit on the elite."""
        noise = torch.randn(
            (self.population, *self.mean.shape), generator=self.generator, device=self.env.device
        )
        theta = self.mean + self.std * noise
        theta[0] = self.mean  # the incumbent is always re-scored
        policy = LinearFusionPolicy(theta, self.scale)
        total = torch.zeros(self.population, device=self.env.device)
        counts = torch.bincount(self.member, minlength=self.population).float()

        def add_reward(req: Request, action: Tensor, out: FusionStep) -> None:
            total.index_add_(0, self.member, out.reward.sum(1))  # per member, over its users and steps

        play(self.env, lambda req: policy(req.state, self.member), self.steps, add_reward)
        score = total / (counts * self.steps)
        elite = theta[score.topk(self.n_elite).indices]
        self.mean = elite.mean(0)
        self.std = (
            elite.std(0, unbiased=False).clamp(min=self.min_std) if self.n_elite > 1 else self.std * 0.9
        )
        return {"score_mean": float(score.mean()), "score_best": float(score.max()),
                "score_incumbent": float(score[0]), "std": float(self.std.mean())}  # fmt: skip
