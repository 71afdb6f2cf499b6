"""A replay buffer of whole-session transitions held as preallocated device tensors (hac_kuaisim.md §5.2).

A ring of ``capacity`` slots: each :meth:`ReplayBuffer.add` writes the B transitions of one env step at the next
B slots (mod capacity), overwriting the oldest; :meth:`ReplayBuffer.sample` draws slots uniformly with
replacement among the filled ones and gathers every field with one index. History ids are stored as int32 and
feedback as uint8 (0/1 labels), which halves/quarters the memory of the two observations per transition.

Shapes: B users per step, H history, A hyper-action, K slate, n sampled.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from recrl_cli.sim.environment import Observation


@dataclass(frozen=True)
class Batch:
    """n transitions: obs / next_obs (Observation of n users), hyper [n, A] (the executed hyper-action), slate
    [n, K] (candidate indices), reward [n], responses [n, K, 7] (0/1), done [n] (float 0/1)."""

    obs: Observation
    next_obs: Observation
    hyper: torch.Tensor
    slate: torch.Tensor
    reward: torch.Tensor
    responses: torch.Tensor
    done: torch.Tensor


_OBS_DTYPES = {"user": torch.long, "items": torch.int32, "feedback": torch.uint8, "mask": torch.bool}


class ReplayBuffer:
    """Ring buffer of transitions on ``device``; storage is allocated on the first :meth:`add`."""

    def __init__(self, capacity: int, device: torch.device | str = "cpu") -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity, self.device = capacity, torch.device(device)
        self.size = 0  # filled slots
        self.pointer = 0  # the next slot written
        self._store: dict[str, torch.Tensor] = {}

    def __len__(self) -> int:
        return self.size

    def _allocate(self, fields: dict[str, torch.Tensor]) -> None:
        for name, value in fields.items():
            self._store[name] = torch.zeros(
                (self.capacity, *value.shape[1:]), dtype=value.dtype, device=self.device
            )

    @staticmethod
    def _obs_fields(prefix: str, obs: Observation) -> dict[str, torch.Tensor]:
        return {f"{prefix}{k}": getattr(obs, k).to(dtype) for k, dtype in _OBS_DTYPES.items()}

    def add(self, obs: Observation, hyper: torch.Tensor, slate: torch.Tensor, reward: torch.Tensor,
            responses: torch.Tensor, done: torch.Tensor, next_obs: Observation) -> None:  # fmt: skip
        """Store one env step of B users (shapes as :class:`Batch` with n = B). B may exceed the capacity:
        then only the last ``capacity`` rows survive, as if they had been added one by one."""
        fields = {**self._obs_fields("obs_", obs), **self._obs_fields("next_", next_obs),
                  "hyper": hyper.float(), "slate": slate.long(), "reward": reward.float(),
                  "responses": responses.to(torch.uint8), "done": done.float()}  # fmt: skip
        if not self._store:
            self._allocate(fields)
        b = hyper.shape[0]
        slots = (self.pointer + torch.arange(b, device=self.device)) % self.capacity
        if b > self.capacity:  # index_copy_ with repeated slots is undefined: keep the last rows only
            slots, keep = slots[-self.capacity :], slice(b - self.capacity, b)
            fields = {k: v[keep] for k, v in fields.items()}
        for name, value in fields.items():
            self._store[name].index_copy_(0, slots, value.to(self.device))
        self.pointer = (self.pointer + b) % self.capacity
        self.size = min(self.size + b, self.capacity)

    def state_dict(self) -> dict:
        """Pointer, size and the filled slots of every field (on the CPU), for an exact mid-run resume.
        Slots [size, capacity) are never read before they are written, so they are not saved."""
        return {"capacity": self.capacity, "size": self.size, "pointer": self.pointer,
                "store": {k: v[: self.size].cpu().clone() for k, v in self._store.items()}}  # fmt: skip

    def load_state_dict(self, state: dict) -> None:
        if state["capacity"] != self.capacity:
            raise ValueError(
                f"buffer capacity {self.capacity} cannot load a state of capacity {state['capacity']}"
            )
        self.size, self.pointer = state["size"], state["pointer"]
        self._store = {}
        for name, value in state["store"].items():
            self._store[name] = torch.zeros(
                (self.capacity, *value.shape[1:]), dtype=value.dtype, device=self.device
            )
            self._store[name][: self.size] = value.to(self.device)

    def _obs(self, prefix: str, idx: torch.Tensor) -> Observation:
        s = self._store
        return Observation(user=s[f"{prefix}user"][idx], items=s[f"{prefix}items"][idx].long(),
                           feedback=s[f"{prefix}feedback"][idx].float(), mask=s[f"{prefix}mask"][idx])  # fmt: skip

    def sample(self, n: int, generator: torch.Generator) -> Batch:
        """n transitions drawn uniformly with replacement from the filled slots (``generator`` on ``device``)."""
        if self.size == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        idx = torch.randint(self.size, (n,), generator=generator, device=self.device)
        s = self._store
        return Batch(obs=self._obs("obs_", idx), next_obs=self._obs("next_", idx), hyper=s["hyper"][idx],
                     slate=s["slate"][idx], reward=s["reward"][idx], responses=s["responses"][idx].float(),
                     done=s["done"][idx])  # fmt: skip
