"""Logged transitions for the offline learners, held whole on one device and sampled by index slicing.

Shapes: n transitions, S state width, A action width (normalised to [−1, 1]), Q reward components (UnifiedRL's
critic sets: Q = 2, the watch-time part and the rest-of-behaviours part).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import Tensor

from recrl_cli.errors import DataError

#: Field name -> rank of its tensor ([n] or [n, width]).
FIELDS: dict[str, int] = {"state": 2, "action": 2, "reward": 2, "next_state": 2, "done": 1, "mu_bp": 2,
                          "next_mu_bp": 2, "lower": 2, "upper": 2}  # fmt: skip
#: Fields of width A (the action space): they must all agree.
ACTION_FIELDS = ("action", "mu_bp", "next_mu_bp", "lower", "upper")


@dataclass(frozen=True)
class TransitionBatch:
    """n logged transitions, all tensors float32 on one device.

    state [n, S], action [n, A] (the logged action, normalised), reward [n, Q] (reward components),
    next_state [n, S], done [n] (0/1), mu_bp [n, A] (baseline-policy action at state), next_mu_bp [n, A]
    (baseline action at next_state), lower / upper [n, A] (exploration box offsets relative to mu_bp, e.g.
    −0.15 / +0.15: the box at state s is [mu_bp + lower, mu_bp + upper]).
    """

    state: Tensor
    action: Tensor
    reward: Tensor
    next_state: Tensor
    done: Tensor
    mu_bp: Tensor
    next_mu_bp: Tensor
    lower: Tensor
    upper: Tensor

    def __len__(self) -> int:
        return self.state.shape[0]

    def to(self, device: torch.device | str) -> TransitionBatch:
        return TransitionBatch(**{k: v.to(device) for k, v in self.as_dict().items()})

    def as_dict(self) -> dict[str, Tensor]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def scalar_reward(self, weights: Tensor) -> Tensor:
        """reward @ weights: [n, Q] x [Q] -> [n] (the baselines' one-dimensional reward)."""
        return self.reward @ weights


def _validate(tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    """Check keys, ranks, row counts and widths; cast to float32. DataError (one line) on any mismatch."""
    missing = [k for k in FIELDS if k not in tensors]
    if missing:
        raise DataError(f"transition data lack the field(s): {', '.join(missing)}")
    extra = sorted(set(tensors) - set(FIELDS))
    if extra:
        raise DataError(f"transition data have unknown field(s): {', '.join(extra)}")
    out = {}
    for name, rank in FIELDS.items():
        value = torch.as_tensor(tensors[name])
        if value.dim() != rank:
            raise DataError(
                f"transition field {name} must have {rank} dimension(s), got shape {tuple(value.shape)}"
            )
        out[name] = value.float()  # done may arrive as bool/int; everything trains in float32
    n = out["state"].shape[0]
    bad_rows = [k for k, v in out.items() if v.shape[0] != n]
    if bad_rows:
        raise DataError(f"transition fields disagree on the row count ({n} states): {', '.join(bad_rows)}")
    if n == 0:
        raise DataError("transition data are empty (0 rows)")
    a = out["action"].shape[1]
    bad_width = [k for k in ACTION_FIELDS if out[k].shape[1] != a]
    if out["next_state"].shape[1] != out["state"].shape[1]:
        bad_width.append("next_state")
    if bad_width:
        raise DataError(f"transition fields have the wrong width: {', '.join(bad_width)}")
    if not bool((out["lower"] <= out["upper"]).all()):
        raise DataError("transition data have an exploration box with lower > upper")
    return out


class TransitionStore:
    """A whole logged dataset as tensors on one device; :meth:`sample` draws batches by index slicing."""

    def __init__(self, tensors: dict[str, Tensor]) -> None:
        self._data = _validate(tensors)
        devices = {v.device for v in self._data.values()}
        if len(devices) != 1:
            raise DataError(f"transition tensors are on several devices: {sorted(map(str, devices))}")
        self.device = devices.pop()

    @classmethod
    def from_tensors(cls, tensors: dict[str, Tensor]) -> TransitionStore:
        """From a dict with the :class:`TransitionBatch` field names (validated; cast to float32)."""
        return cls(tensors)

    @classmethod
    def concat(cls, stores: list[TransitionStore]) -> TransitionStore:
        """The rows of several stores in order (e.g. the cumulative data of progressive training rounds)."""
        if not stores:
            raise DataError("no transition stores to concatenate")
        widths = {(s.state_dim, s.action_dim, s.reward_dim) for s in stores}
        if len(widths) > 1:
            raise DataError(f"transition stores differ in (state, action, reward) width: {sorted(widths)}")
        return cls({k: torch.cat([s._data[k].to(stores[0].device) for s in stores]) for k in FIELDS})

    def __len__(self) -> int:
        return self._data["state"].shape[0]

    @property
    def state_dim(self) -> int:
        return self._data["state"].shape[1]

    @property
    def action_dim(self) -> int:
        return self._data["action"].shape[1]

    @property
    def reward_dim(self) -> int:
        return self._data["reward"].shape[1]

    def to(self, device: torch.device | str) -> TransitionStore:
        return TransitionStore({k: v.to(device) for k, v in self._data.items()})

    def take(self, index: Tensor) -> TransitionBatch:
        """The rows ``index`` (LongTensor [b] on any device) as a batch."""
        index = index.to(self.device)
        return TransitionBatch(**{k: v.index_select(0, index) for k, v in self._data.items()})

    def all(self) -> TransitionBatch:
        """Every row as one batch (views, no copy)."""
        return TransitionBatch(**self._data)

    def sample(self, batch_size: int, generator: torch.Generator) -> TransitionBatch:
        """``batch_size`` rows drawn uniformly with replacement by ``generator`` (on any device)."""
        if batch_size < 1:
            raise DataError(f"batch size must be a positive integer, got {batch_size!r}")
        index = torch.randint(len(self), (batch_size,), generator=generator, device=generator.device)
        return self.take(index)
