"""Networks of the offline learners: a deterministic tanh actor, a squashed-Gaussian actor and a batched
ensemble of Q critics (one module for 1, 2 or q·m = 48 members).

Shapes: n rows, S state width, A action width, E ensemble members, H hidden width.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from recrl_cli.nets.layers import MLP

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0


class TanhActor(nn.Module):
    """μ(s) = tanh(MLP(s)): [n, S] -> [n, A] in (−1, 1)."""

    def __init__(self, state_dim: int, action_dim: int, hidden: Sequence[int]) -> None:
        super().__init__()
        self.net = MLP(state_dim, hidden, 0.0, action_dim)

    def forward(self, state: Tensor) -> Tensor:
        return torch.tanh(self.net(state))


class SquashedGaussianActor(nn.Module):
    """SAC's policy: u ~ N(m(s), diag σ(s)²), a = tanh(u); log π(a|s) with the tanh change of variables.

    forward(state [n, S], generator) -> (a [n, A], log π(a|s) [n]); :meth:`mode` is tanh(m(s)) (deterministic).
    """

    def __init__(self, state_dim: int, action_dim: int, hidden: Sequence[int]) -> None:
        super().__init__()
        self.net = MLP(state_dim, hidden, 0.0, 2 * action_dim)

    def mode(self, state: Tensor) -> Tensor:
        return torch.tanh(self.net(state).chunk(2, -1)[0])

    def forward(self, state: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        mean, log_std = self.net(state).chunk(2, -1)
        log_std = log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)
        eps = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        u = mean + eps * log_std.exp()
        # log N(u) − Σ log(1 − tanh(u)²), the latter as 2(log 2 − u − softplus(−2u)) for stability.
        log_prob = (-0.5 * eps.square() - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
        log_prob = log_prob - (2.0 * (math.log(2.0) - u - F.softplus(-2.0 * u))).sum(-1)
        return torch.tanh(u), log_prob


class EnsembleQ(nn.Module):
    """E independent Q(s, a) MLPs evaluated together: Linear → ReLU per hidden width, then Linear(→ 1).

    The members share their input (s, a), so the first layer is ONE matmul [n, S + A] x [S + A, E·H0]; the
    later layers are one ``baddbmm`` over the E members. This replaces a Python loop over E small modules
    (E kernel launches per layer) and computes exactly the same numbers. Each member is initialised like
    ``nn.Linear`` (uniform ±1/√fan_in), independently.

    forward(state [n, S], action [n, A]) -> Q [E, n].
    """

    def __init__(self, members: int, state_dim: int, action_dim: int, hidden: Sequence[int]) -> None:
        super().__init__()
        self.members, in_dim = members, state_dim + action_dim
        dims = (in_dim, *hidden, 1)
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for a, b in itertools.pairwise(dims):
            bound = 1.0 / math.sqrt(a)
            # layer 0 is stored [in, E, H0] so that reshape(in, E·H0) is a view (one wide matmul)
            shape = (a, members, b) if not self.weights else (members, a, b)
            self.weights.append(nn.Parameter(torch.empty(shape).uniform_(-bound, bound)))
            self.biases.append(nn.Parameter(torch.empty(members, 1, b).uniform_(-bound, bound)))

    def forward(self, state: Tensor, action: Tensor, detach: bool = False) -> Tensor:
        """Q of every member; ``detach=True`` reads the weights without recording their gradients (the
        actor's loss only needs ∂Q/∂a, not the critics' weight gradients)."""
        ws = [w.detach() for w in self.weights] if detach else list(self.weights)
        bs = [b.detach() for b in self.biases] if detach else list(self.biases)
        n, s_dim = state.shape
        w0 = ws[0].reshape(ws[0].shape[0], -1)  # [S + A, E·H0], a view
        # s @ W_s + a @ W_a rather than cat(s, a) @ W: the same numbers, but the actor's backward then computes
        # ∂/∂a through the A action rows only, not through all S + A input rows (S = 128 vs A = 10).
        h = torch.addmm(state @ w0[:s_dim], action, w0[s_dim:])  # [n, E·H0]
        h = h.view(n, self.members, -1).transpose(0, 1) + bs[0]  # [E, n, H0]
        for w, b in zip(ws[1:], bs[1:], strict=True):
            h = torch.baddbmm(b, torch.relu(h), w)
        return h.squeeze(-1)

    def member(self, index: int) -> list[tuple[Tensor, Tensor]]:
        """(weight [in, out], bias [out]) per layer of one member: the naive per-critic view (tests)."""
        layers = [(self.weights[0][:, index], self.biases[0][index, 0])]
        return layers + [
            (w[index], b[index, 0]) for w, b in zip(self.weights[1:], self.biases[1:], strict=True)
        ]
