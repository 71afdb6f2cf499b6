"""RMTL's per-task critics (rmtl.md §2.3 CriticNeg) and their offline TD learner (§2.4, fixed by default).

Critic k reads the state ids [B, F] through its OWN embedding, the action a_k through ``Linear(1→D)`` as one extra
token, and maps the flattened [(F+1)·D] input through a bottom MLP (512, 256) and a tower (128, 64) → 1, with
ReLU + dropout 0.2 after every hidden layer. Its output is Q_k = −softplus(z) (default) or −relu(z) (the
reference, ``relu_critic_output``): rewards are log-likelihoods ≤ 0, so Q ≤ 0 by construction. −relu has a dead
zone: once z < 0 for a state, Q = 0 and no gradient reaches it, so the fixed default uses the smooth softplus.

The T critics are independent networks (own initialisation, own parameters) but run as ONE batched network: their
embedding tables are the row blocks of one [T·V, D] parameter, their MLPs one :class:`MLPBank` with T groups, so a
forward pass is one gather and one ``baddbmm`` per layer for all tasks (the reference ran two separate critics).

Why the embedding is trained sparsely: at RetailRocket size the tables hold T·V ≈ 2·10^5 rows (≈ 100 MB), while a
batch touches a few thousand. A dense gradient, a dense Adam step and a dense soft update of the target would each
sweep all of it every step, which cost more than the critic's matmuls on a 2-core CPU. So a TD step gathers the
batch's unique rows into a small leaf tensor, back-propagates into that, and updates only those rows with a lazy Adam
(:class:`RowAdam`, the update of ``torch.optim.SparseAdam``: rows absent from the batch keep their moments and do not
move, whereas the reference's dense Adam keeps moving them by stale momentum; torch's own sparse path is not used
because its CPU ``coalesce`` alone costs ~200 ms per batch). The target tables are updated lazily but EXACTLY: an
online row only changes when it is in a batch, so its target row after n soft updates is θ + (1−τ)^n·(θ'₀ − θ),
computed when the row is next read or before the online row changes (:class:`LazyTargetRows`).
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from recrl_cli.nets.layers import StackedLinear, relu_dropout
from recrl_cli.training import distributed

TARGET_NOISE_STD, TARGET_NOISE_CLIP = 0.4, 3e-3  # faithful bug 15 (Arguments L14-15, BC agent L59-67)


class TaskCritics(nn.Module):
    """T critics Q_k(s, a_k), batched. forward: ids [B, F] long, actions [B, T] → Q [B, T] (≤ 0).

    ``embedding`` is [T·V, D] with V = Σ cardinalities: critic k's table is rows [k·V, (k+1)·V).
    """

    def __init__(
        self,
        cardinalities: Sequence[int],
        num_tasks: int,
        embed_dim: int = 128,
        bottom_dims: Sequence[int] = (512, 256),
        tower_dims: Sequence[int] = (128, 64),
        dropout: float = 0.2,
        relu_output: bool = False,
    ) -> None:
        super().__init__()
        self.arch = {
            "cardinalities": [int(c) for c in cardinalities],
            "num_tasks": int(num_tasks),
            "embed_dim": int(embed_dim),
            "bottom_dims": tuple(int(d) for d in bottom_dims),
            "tower_dims": tuple(int(d) for d in tower_dims),
            "dropout": float(dropout),
            "relu_output": bool(relu_output),
        }
        self.num_tasks, self.num_fields, self.relu_output = num_tasks, len(cardinalities), relu_output
        self.vocab = vocab = sum(cardinalities)
        offsets = torch.tensor((0, *cardinalities[:-1]), dtype=torch.long).cumsum(0)
        # Row of (task k, field f, id x) in the [T·V, D] table: k·V + offset_f + x.
        task_offsets = torch.arange(num_tasks, dtype=torch.long).view(-1, 1, 1) * vocab
        self.register_buffer("offsets", offsets, persistent=False)
        self.register_buffer("task_offsets", task_offsets, persistent=False)
        # Trained row-wise by CriticLearner (RowAdam), never through autograd on the whole table.
        self.embedding = nn.Parameter(torch.empty(num_tasks * vocab, embed_dim), requires_grad=False)
        for k in range(num_tasks):  # each critic's table initialised like FeatureEmbedding
            nn.init.xavier_uniform_(self.embedding.data[k * vocab : (k + 1) * vocab])
        self.action = StackedLinear(num_tasks, 1, embed_dim)  # Linear(1→D) per critic
        dims = ((self.num_fields + 1) * embed_dim, *bottom_dims, *tower_dims, 1)
        self.layers = nn.ModuleList(StackedLinear(num_tasks, a, b) for a, b in itertools.pairwise(dims))
        self.dropout = dropout

    def rows(self, ids: torch.Tensor) -> torch.Tensor:
        """Table rows read for state ids [B, F] → [T, B, F] (critic k's rows offset by k·V)."""
        return (ids + self.offsets).unsqueeze(0) + self.task_offsets

    def forward(self, ids: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """ids [B, F], actions [B, T] → Q [B, T] (no gradient reaches the tables; see :meth:`q_values`)."""
        return self.q_values(F.embedding(self.rows(ids), self.embedding.detach()), actions)

    def q_values(self, emb: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Q [B, T] from the state's gathered embeddings emb [T, B, F, D] and actions [B, T].

        The first layer reads [state tokens ‖ action token] with weight [W_s; W_a]. The action token is
        a·w + b (``Linear(1→D)``), so its part of the product is a·(w W_a) + b W_a: a rank-1 term plus a bias.
        Computing it that way gives the same function without concatenating a [T, B, (F+1)·D] input or
        multiplying the [B, D] token by W_a.
        """
        first = self.layers[0]
        state_dims = emb.shape[2] * emb.shape[3]
        w_state, w_action = (
            first.weight[:, :state_dims],
            first.weight[:, state_dims:],
        )  # [T, F·D, d0], [T, D, d0]
        gain = torch.bmm(self.action.weight, w_action)  # [T, 1, d0]
        bias = torch.baddbmm(first.bias, self.action.bias, w_action)  # [T, 1, d0]
        h = torch.baddbmm(bias, emb.flatten(2), w_state).addcmul_(
            actions.t().unsqueeze(-1), gain
        )  # [T, B, d0]
        for layer in self.layers[1:]:
            h = layer(relu_dropout(h, self.dropout, self.training))
        z = h.squeeze(-1)  # [T, B]
        q = -torch.relu(z) if self.relu_output else -F.softplus(z)
        return q.t()

    def macs_per_sample(self) -> int:
        """Multiply-adds of all T critics' forward for one state-action pair, as :meth:`q_values` runs it."""
        first = self.layers[0]
        state_dims = self.num_fields * self.arch["embed_dim"]
        macs = state_dims * first.out_features + first.out_features  # state product + rank-1 action term
        macs += sum(layer.in_features * layer.out_features for layer in self.layers[1:])
        return self.num_tasks * macs

    def dense_parameters(self) -> list[nn.Parameter]:
        """Every parameter except the embedding tables (trained with dense Adam)."""
        return [p for name, p in self.named_parameters() if name != "embedding"]

    @torch.no_grad()
    def copy_first_critic(self) -> None:
        """Faithful bug 13 (``critic2 = deepcopy(critic1)``): make every critic start equal to critic 0."""
        table = self.embedding.view(self.num_tasks, self.vocab, -1)
        table[1:] = table[:1]
        for param in self.dense_parameters():  # stacked with the task as the leading dim
            param[1:] = param[:1]

    @torch.no_grad()
    def load_feature_tables(self, tables: Sequence[torch.Tensor]) -> None:
        """Overwrite the feature rows of the tables with [V_f, D] tables (one for all critics, or one each).

        The reference copies the pretrained actor's embedding into both critics (DDPG_ESMM L85-86); the rows of
        any extra context fields after the features keep their initialisation.
        """
        table = self.embedding.view(self.num_tasks, self.vocab, -1)
        for k in range(self.num_tasks):
            source = tables[k if len(tables) > 1 else 0]
            table[k, : source.shape[0]] = source.to(table.dtype)

    @classmethod
    def from_arch(cls, arch: dict[str, Any]) -> TaskCritics:
        return cls(**arch)


class RowAdam:
    """Lazy Adam on selected rows of one [R, D] table: exactly ``torch.optim.SparseAdam``'s update.

    For the rows r of a step (unique), with the step count t shared by the table:
    m_r ← β₁m_r + (1−β₁)g_r,  v_r ← β₂v_r + (1−β₂)g_r²,  θ_r ← θ_r − lr·√(1−β₂^t)/(1−β₁^t) · m_r / (√v_r + ε).
    """

    def __init__(
        self, table: torch.Tensor, lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8
    ) -> None:
        self.table, self.lr, self.betas, self.eps = table, lr, betas, eps
        self.exp_avg = torch.zeros_like(table)
        self.exp_avg_sq = torch.zeros_like(table)
        self.step_count = 0

    @torch.no_grad()
    def step(self, rows: torch.Tensor, grad: torch.Tensor) -> None:
        """Update unique ``rows`` [U] with their gradient ``grad`` [U, D]."""
        beta1, beta2 = self.betas
        self.step_count += 1
        m = self.exp_avg[rows].lerp_(grad, 1.0 - beta1)
        v = self.exp_avg_sq[rows].mul_(beta2).addcmul_(grad, grad, value=1.0 - beta2)
        self.exp_avg[rows], self.exp_avg_sq[rows] = m, v
        bias1, bias2 = 1.0 - beta1**self.step_count, 1.0 - beta2**self.step_count
        step_size = self.lr * math.sqrt(bias2) / bias1
        self.table[rows] = self.table[rows].addcdiv_(m, v.sqrt_().add_(self.eps), value=-step_size)

    def state_dict(self) -> dict[str, Any]:
        """References to the moments, like ``nn.Module.state_dict`` (no copy of two table-sized tensors)."""
        return {"exp_avg": self.exp_avg, "exp_avg_sq": self.exp_avg_sq, "step": self.step_count}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.exp_avg.copy_(state["exp_avg"])
        self.exp_avg_sq.copy_(state["exp_avg_sq"])
        self.step_count = int(state["step"])


class LazyTargetRows:
    """Exact soft update θ' ← τθ + (1−τ)θ' of an embedding table, applied to a row only when needed.

    Invariant: the online row θ_r is unchanged since the soft-update count ``synced_at[r]``, so after
    ``count − synced_at[r]`` further updates the true target row is θ_r + (1−τ)^n·(θ'_r − θ_r).
    :meth:`sync` writes that into the stored target rows. Call it on rows about to be READ from the target and on
    rows about to be CHANGED in the online table.
    """

    def __init__(self, num_rows: int, tau: float, device: torch.device) -> None:
        self.decay = 1.0 - tau
        self.synced_at = torch.zeros(num_rows, dtype=torch.long, device=device)
        self.count = 0

    @torch.no_grad()
    def sync(self, rows: torch.Tensor, online: torch.Tensor, target: torch.Tensor) -> None:
        """Bring target rows ``rows`` (any shape, duplicates fine) of [R, D] ``target`` up to date."""
        rows = torch.unique(rows)
        lag = self.count - self.synced_at[rows]  # soft updates each row has missed
        theta = online[rows]
        keep = torch.pow(self.decay, lag.to(online.dtype)).unsqueeze(1)  # (1−τ)^n
        target[rows] = torch.addcmul(theta, keep, target[rows] - theta)
        self.synced_at[rows] = self.count

    def sync_all(self, online: torch.Tensor, target: torch.Tensor) -> None:
        self.sync(torch.arange(online.shape[0], device=online.device), online, target)

    def state_dict(self) -> dict[str, Any]:
        return {"synced_at": self.synced_at.clone(), "count": self.count}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.synced_at.copy_(state["synced_at"])
        self.count = int(state["count"])


class CriticLearner:
    """Offline TD learning of :class:`TaskCritics` with soft-updated targets (rmtl.md §2.4).

    Fixed target: y_k = r_k + γ(1 − done)·Q'_k(s', a'_k), with a' the frozen actor's action at s' and Q' the
    target critics (evaluated without dropout). Loss Σ_k mean_i (Q_k(s_i, a_{k,i}) − y_{k,i})², i.e. one MSE per
    critic as in the reference; Adam is elementwise, so one optimizer over the stacked parameters equals one per
    critic (dense Adam for the MLPs, :class:`RowAdam` for the tables, see the module docstring). Every
    ``target_update_every`` steps θ' ← τθ + (1−τ)θ'.

    Faithful switches: ``twin_min_same`` (bug 14) takes min(Q', Q) of the target and online copy of the SAME
    critic; ``target_noise`` (bug 15) adds clip(N(0, 0.4), ±0.003) to a', one value per task per batch.
    """

    def __init__(
        self,
        critics: TaskCritics,
        *,
        lr: float,
        gamma: float,
        tau: float,
        target_update_every: int,
        twin_min_same: bool = False,
        target_noise: bool = False,
    ) -> None:
        self.online = critics
        self.target = copy.deepcopy(critics).eval()
        table = critics.embedding.data
        self.lazy = LazyTargetRows(table.shape[0], tau, table.device)
        fused = table.device.type in ("cpu", "cuda")  # one kernel for all dense tensors
        self.dense_optimizer = torch.optim.Adam(critics.dense_parameters(), lr=lr, fused=fused)
        self.row_optimizer = RowAdam(table, lr)
        self.gamma, self.tau, self.every = gamma, tau, target_update_every
        self.twin_min_same, self.target_noise = twin_min_same, target_noise
        self.steps = 0
        self.target.requires_grad_(False)

    @torch.no_grad()
    def td_target(
        self, rewards: torch.Tensor, done: torch.Tensor, next_ids: torch.Tensor, next_actions: torch.Tensor
    ) -> torch.Tensor:
        """y [B, T] from rewards [B, T], done [B], next-state ids [B, F] and actor actions a' [B, T]."""
        if self.target_noise:
            noise = (torch.randn(next_actions.shape[1], device=next_actions.device) * TARGET_NOISE_STD).clamp(
                -TARGET_NOISE_CLIP, TARGET_NOISE_CLIP
            )
            next_actions = next_actions + noise
        self.lazy.sync(self.online.rows(next_ids), self.online.embedding.data, self.target.embedding.data)
        q_next = self.target(next_ids, next_actions)
        if self.twin_min_same:
            q_next = torch.minimum(q_next, self.online(next_ids, next_actions))
        return rewards + self.gamma * (1.0 - done).unsqueeze(1) * q_next

    def step(
        self,
        ids: torch.Tensor,
        actions: torch.Tensor,
        rewards: torch.Tensor,
        done: torch.Tensor,
        next_ids: torch.Tensor,
        next_actions: torch.Tensor,
        batch_rows: int | None = None,
    ) -> dict[str, float]:
        """One TD update on a batch of B transitions; returns td_loss (summed over tasks), q_mean, target_mean.

        ``batch_rows`` (data-parallel runs): the inputs are this process's B_r transitions of a global batch
        of that many; the gradients are summed over the processes (see :meth:`_sharded_step`).
        """
        self.online.train()
        target = self.td_target(rewards, done, next_ids, next_actions)
        if batch_rows is not None:
            return self._sharded_step(ids, actions, target, batch_rows)
        # The batch's unique table rows become a small leaf: the backward and Adam touch U rows, not T·V.
        rows, inverse = torch.unique(self.online.rows(ids), return_inverse=True)  # [U], [T, B, F]
        leaf = self.online.embedding.data[rows].requires_grad_()
        q = self.online.q_values(F.embedding(inverse, leaf), actions)
        loss = (q - target).square().mean(0).sum()
        self.dense_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.lazy.sync(rows, self.online.embedding.data, self.target.embedding.data)  # rows about to change
        self.dense_optimizer.step()
        self.row_optimizer.step(rows, leaf.grad)
        self.steps += 1
        if self.steps % self.every == 0:
            self.soft_update()
        values = torch.stack([loss.detach(), q.detach().mean(), target.mean()]).tolist()  # one host sync
        return dict(zip(("td_loss", "q_mean", "target_mean"), values, strict=True))

    def _sharded_step(
        self, ids: torch.Tensor, actions: torch.Tensor, target: torch.Tensor, batch_rows: int
    ) -> dict[str, float]:
        """The same update from W processes: every one steps the UNION of the batch's table rows.

        Each process's loss is its sum of squared TD errors over B (the global batch), so the summed gradients
        are those of Σ_k mean_i over the whole batch; rows a process did not touch get its zero gradient. The
        union is the set of rows the 1-process step would update, so RowAdam and the lazy target see the same
        rows in the same order.
        """
        flat = self.online.rows(ids)  # [T, B_r, F]
        rows = distributed.union_rows(torch.unique(flat))  # [U] sorted, equal on every process
        leaf = self.online.embedding.data[rows].requires_grad_()
        q = self.online.q_values(F.embedding(torch.searchsorted(rows, flat), leaf), actions)
        loss = (q - target).square().sum() / batch_rows
        self.dense_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        dense = self.online.dense_parameters()
        for p in dense:  # every process must send the same buffer layout
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        distributed.all_reduce_sum_([leaf.grad, *(p.grad for p in dense)])
        self.lazy.sync(rows, self.online.embedding.data, self.target.embedding.data)  # rows about to change
        self.dense_optimizer.step()
        self.row_optimizer.step(rows, leaf.grad)
        self.steps += 1
        if self.steps % self.every == 0:
            self.soft_update()
        sums = distributed.all_sum(torch.stack([loss.detach(), q.detach().sum(), target.sum()]))
        cells = batch_rows * q.shape[1]
        return {
            "td_loss": float(sums[0]),
            "q_mean": float(sums[1] / cells),
            "target_mean": float(sums[2] / cells),
        }

    @torch.no_grad()
    def reset_target(self) -> None:
        """θ' ← θ: restart the targets from the online critics (after their initialisation was changed)."""
        self.target.load_state_dict(self.online.state_dict())
        self.lazy.synced_at.fill_(self.lazy.count)

    @torch.no_grad()
    def soft_update(self) -> None:
        """θ' ← τθ + (1−τ)θ': one fused foreach lerp for the MLPs, a lazy count for the tables."""
        torch._foreach_lerp_(self.target.dense_parameters(), self.online.dense_parameters(), self.tau)
        self.lazy.count += 1

    def synced_target(self) -> TaskCritics:
        """The target critics with every table row brought up to date (for inspection and tests)."""
        self.lazy.sync_all(self.online.embedding.data, self.target.embedding.data)
        return self.target

    def state_dict(self) -> dict[str, Any]:
        return {
            "online": self.online.state_dict(),
            "target": self.target.state_dict(),  # tables as stored (lazy rows not forced: resume stays exact)
            "lazy": self.lazy.state_dict(),
            "dense_optimizer": self.dense_optimizer.state_dict(),
            "row_optimizer": self.row_optimizer.state_dict(),
            "steps": self.steps,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.online.load_state_dict(state["online"])
        self.target.load_state_dict(state["target"])
        self.lazy.load_state_dict(state["lazy"])
        self.dense_optimizer.load_state_dict(state["dense_optimizer"])
        self.row_optimizer.load_state_dict(state["row_optimizer"])
        self.steps = int(state["steps"])
