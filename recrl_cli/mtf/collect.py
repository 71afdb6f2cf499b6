"""Logged datasets (A6, Requirements item 4): roll an exploration policy through the fusion env, keep everything
the paper logs, write it as Parquet (one row per request) and load it back as a TransitionStore.

A log of T requests of B users holds n = T·B rows. ``next_state`` of a row is the state of the same user row at
the next request; where the user left (done = 1) that row already holds a fresh user, whose state is kept
there only to give the field a value: every learner multiplies the bootstrap by (1 − done). ``next_mu_bp`` is
the centre policy's action at ``next_state`` (the behaviour policy is stored, so it can be recomputed).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from torch import Tensor

from recrl_cli.errors import DataError
from recrl_cli.mtf.env import FusionEnv, FusionStep, Request
from recrl_cli.mtf.policies import explore
from recrl_cli.offline.batch import FIELDS, TransitionStore
from recrl_cli.sim.rollout import play

Policy = Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class Logs:
    """n logged requests (tensors on one device). state / next_state [n, S]; mu_bp / next_mu_bp / action / lower /
    upper [n, A]; reward [n, 2]; done [n]; candidates [n, C]; preds [n, C, k]; slate / items [n, K];
    responses [n, K, 7]; play [n, K]; user / slot / step / round [n]."""

    state: Tensor
    mu_bp: Tensor
    action: Tensor
    lower: Tensor
    upper: Tensor
    reward: Tensor
    done: Tensor
    next_state: Tensor
    next_mu_bp: Tensor
    candidates: Tensor
    preds: Tensor
    slate: Tensor
    items: Tensor
    responses: Tensor
    play: Tensor
    user: Tensor
    slot: Tensor
    step: Tensor
    round: Tensor

    def __len__(self) -> int:
        return self.state.shape[0]

    def transitions(self) -> dict[str, Tensor]:
        """The learners' fields (``recrl_cli.offline.batch.FIELDS``)."""
        return {k: getattr(self, k) for k in FIELDS}


def concat(logs: list[Logs]) -> Logs:
    return Logs(**{f.name: torch.cat([getattr(x, f.name) for x in logs]) for f in fields(Logs)})


@torch.no_grad()
def collect(env: FusionEnv, center: Policy, *, noise: str | None, width: float, bound: float, steps: int,
            generator: torch.Generator, round_id: int = 0) -> Logs:  # fmt: skip
    """``steps`` requests of every env user with a = explore(center(s)) (``noise`` None: a = center(s))."""
    if steps < 1:
        raise ValueError(f"a log needs at least one request, got steps={steps}")
    cols: dict[str, list[Tensor]] = {k: [] for k in ("state", "mu_bp", "action", "reward", "done", "candidates",
                                                      "preds", "slate", "items", "responses", "play", "user",
                                                      "step", "next_state", "next_mu_bp")}  # fmt: skip
    # The centre's action at the current request, computed once per request: it is this row's mu_bp and the
    # previous row's next_mu_bp.
    mu = center(env.request().state)

    def act(req: Request) -> Tensor:
        return mu if noise is None else explore(mu, noise, width, generator)

    def log(req: Request, a: Tensor, out: FusionStep) -> None:
        nonlocal mu
        nxt = env.request()
        for k, v in (("state", req.state), ("mu_bp", mu), ("action", a), ("reward", out.reward),
                     ("done", out.done.float()), ("candidates", req.candidates), ("preds", req.preds),
                     ("slate", out.slate), ("items", out.items), ("responses", out.responses), ("play", out.play),
                     ("user", req.user), ("step", req.depth), ("next_state", nxt.state)):  # fmt: skip
            cols[k].append(v)
        mu = center(nxt.state)
        cols["next_mu_bp"].append(mu)

    play(env, act, steps, log)
    out_t = {k: torch.cat(v) for k, v in cols.items()}
    n, b = out_t["state"].shape[0], env.batch
    box = torch.full_like(out_t["action"], bound)
    dev = out_t["state"].device
    return Logs(**out_t, lower=-box, upper=box, slot=torch.arange(b, device=dev).repeat(steps),
                round=torch.full((n,), round_id, dtype=torch.long, device=dev))  # fmt: skip


def to_store(logs: Logs) -> TransitionStore:
    return TransitionStore.from_tensors(logs.transitions())


# -- Parquet --------------------------------------------------------------------------------------------------------
def _column(t: Tensor) -> pa.Array:
    a = t.detach().cpu().numpy()
    if a.ndim == 1:
        return pa.array(a)
    width = int(np.prod(a.shape[1:]))
    return pa.FixedSizeListArray.from_arrays(pa.array(a.reshape(-1)), width)


def write_logs(logs: Logs, path: Path, noise: str) -> None:
    """One row per request; matrices as fixed-size lists (flattened row-major; shapes in the metadata)."""
    names = [f.name for f in fields(Logs)]
    table = pa.table({k: _column(getattr(logs, k)) for k in names})
    shapes = {k: list(getattr(logs, k).shape[1:]) for k in names}
    meta = {b"recrl.mtf.shapes": repr(shapes).encode(), b"recrl.mtf.noise": noise.encode()}
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table.replace_schema_metadata(meta), path)


def read_logs(path: Path, device: torch.device | str = "cpu") -> Logs:
    """Load :func:`write_logs` output (DataError, one line, on a missing or foreign file)."""
    import ast

    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowInvalid) as exc:
        raise DataError(f"cannot read fusion logs {path}: {exc}") from None
    meta = table.schema.metadata or {}
    if b"recrl.mtf.shapes" not in meta:
        raise DataError(f"{path} is not a recrl fusion log (no recrl.mtf.shapes metadata)")
    shapes = ast.literal_eval(meta[b"recrl.mtf.shapes"].decode())
    out = {}
    for k, shape in shapes.items():
        col = table.column(k).combine_chunks()
        flat = col.flatten().to_numpy() if shape else col.to_numpy()
        out[k] = torch.as_tensor(np.array(flat).reshape(len(table), *shape), device=device)
    return Logs(**out)
