"""Whole-session metrics as KuaiSim logs them (hac_kuaisim.md §6.1): depth, average and total reward, coverage,
ILD, with the last-10-steps window of its reports.

Per step the environment returns device tensors; :class:`SessionMetrics` only stacks them, so collecting
metrics never synchronises with the device until :meth:`SessionMetrics.summary` is called.
Shapes: B users, K slate, d = URM enc_dim, T steps.
"""

from __future__ import annotations

import torch

from recrl_cli.data.prepare.kuairand import BEHAVIOURS


def slate_cosines(unit: torch.Tensor) -> torch.Tensor:
    """Pairwise cosines of each slate: unit-norm item encodings [B, K, d] -> [B, K, K]."""
    return unit @ unit.transpose(1, 2)


def slate_ild(cos: torch.Tensor, enc_dim: int) -> torch.Tensor:
    """KuaiSim's ILD, 1 − (1/(B·K²·d)) Σ_b Σ_{i,j} cos_bij (the diagonal included; /d is §8 #12's mean over the
    encoding instead of a sum): cos [B, K, K] -> 0-dim. Identical items give 1 − 1/d, orthogonal 1 − 1/(K d)."""
    return 1.0 - cos.mean() / enc_dim


def slate_ild_pairwise(cos: torch.Tensor) -> torch.Tensor:
    """The usual intra-list distance, 1 − mean over users of the mean off-diagonal cosine: [B, K, K] -> 0-dim
    (0 for identical items, 1 for orthogonal ones; NaN for K = 1)."""
    k = cos.shape[-1]
    off = cos.sum((1, 2)) - cos.diagonal(dim1=1, dim2=2).sum(1)
    return 1.0 - (off / (k * (k - 1))).mean() if k > 1 else torch.full((), float("nan"), device=cos.device)


def _forward_fill(sums: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Per-step means sums/counts [T], with a step of count 0 repeating the previous value (NaN before any)."""
    steps = torch.arange(len(sums), device=sums.device)
    last = torch.where(counts > 0, steps, torch.full_like(steps, -1)).cummax(0).values
    means = sums / counts.clamp(min=1)
    return torch.where(last >= 0, means[last.clamp(min=0)], torch.full_like(means, float("nan")))


class SessionMetrics:
    """Accumulates :class:`recrl_cli.sim.environment.StepResult` s; see :meth:`series` for the definitions."""

    def __init__(self) -> None:
        self._rows: list[torch.Tensor] = []

    def update(self, result) -> None:
        """Record one step (a ``StepResult``)."""
        done = result.done.float()
        r = result.reward
        self._rows.append(torch.cat([
            torch.stack([r.mean(), r.var(unbiased=False), done.sum(), (result.depth * done).sum(),
                         (result.total_reward * done).sum(), result.coverage.float(), result.ild,
                         result.ild_pairwise]),
            result.responses.mean((0, 1)),
        ]))  # fmt: skip

    def __len__(self) -> int:
        return len(self._rows)

    def state_dict(self) -> dict[str, torch.Tensor | None]:
        """The recorded steps [T, 15] (None before any), for an exact mid-run resume."""
        return {"rows": torch.stack(self._rows).cpu() if self._rows else None}

    def load_state_dict(
        self, state: dict[str, torch.Tensor | None], device: torch.device | str = "cpu"
    ) -> None:
        rows = state["rows"]
        self._rows = [] if rows is None else list(rows.to(device).unbind(0))

    def series(self) -> dict[str, torch.Tensor]:
        """Per-step values [T] (CPU float64):

        avg_reward: mean r_t over the B users; reward_variance: their variance; leave: leavers this step;
        depth / total_reward: the mean final step count / Σ r of this step's leavers, the previous step's value
        repeated when nobody left (§6.1); coverage: distinct items in the B × K action; ild, ild_pairwise: see
        :mod:`recrl_cli.sim.metrics`; ``<behaviour>_rate``: share of sampled positives.
        """
        if not self._rows:
            return {}
        m = torch.stack(self._rows).double().cpu()
        out = {"avg_reward": m[:, 0], "reward_variance": m[:, 1], "leave": m[:, 2],
               "depth": _forward_fill(m[:, 3], m[:, 2]), "total_reward": _forward_fill(m[:, 4], m[:, 2]),
               "coverage": m[:, 5], "ild": m[:, 6], "ild_pairwise": m[:, 7]}  # fmt: skip
        out.update({f"{b}_rate": m[:, 8 + j] for j, b in enumerate(BEHAVIOURS)})
        return out

    def summary(self, window: int = 10) -> dict[str, float]:
        """Mean of each series over the last ``window`` steps (KuaiSim's report; NaN steps ignored)."""
        return {k: float(v[-window:].nanmean()) for k, v in self.series().items()}
