"""Exploration on the hyper-action (hac_kuaisim.md §5.1, §5.4), fixed per §8 #7: Gaussian noise, not U[0, σ)
(``uniform_noise`` switch).

With probability ε (one draw for the whole batch, as KuaiSim) the batch gets a pure random hyper-action
clamp(N(0, σ²), −c, c), whose direction is uniform, so its top-K is a random slate; otherwise
Z + clamp(N(0, σ²), −c, c). The choice is a ``torch.where``, so acting never reads a value back from the device.
"""

from __future__ import annotations

import torch


class LinearSchedule:
    """ε(t) linear from ``initial`` to ``final`` over ``steps`` calls, then ``final`` (KuaiSim's LinearScheduler;
    its scripts set initial = final = 0.01, a constant)."""

    def __init__(self, initial: float, final: float, steps: int) -> None:
        self.initial, self.final, self.steps = initial, final, steps

    def value(self, t: int) -> float:
        frac = min(max(t, 0) / self.steps, 1.0)
        return self.initial + frac * (self.final - self.initial)


def perturb(hyper: torch.Tensor, std: float | torch.Tensor, clip: float | None, epsilon: float,
            generator: torch.Generator, uniform: bool = False) -> torch.Tensor:  # fmt: skip
    """Explored hyper-action [B, A] from the policy's ``hyper`` [B, A]: noise std (scalar or [A]), clip c
    (None = unclipped), ε the probability of a random batch. ``uniform`` (faithful §8 #7): the noise is
    U[0, 1)·σ, non-negative, as KuaiSim draws it (the random batch too)."""
    draw = torch.rand if uniform else torch.randn
    noise = draw(hyper.shape, generator=generator, device=hyper.device) * std
    if clip is not None:
        noise = noise.clamp(-clip, clip)
    coin = torch.rand((), generator=generator, device=hyper.device)
    return torch.where(coin < epsilon, noise, hyper + noise)
