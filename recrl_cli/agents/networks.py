"""The networks of the agents (hac_kuaisim.md §5.1, §5.2): the user-state encoder, the hyper-action policy with
its dot-product item scorer, the Q and V critics, and HAC's inverse module.

Shapes: B users (or sampled transitions), H history, d = enc_dim, A = d + 1 (hyper-action: weights w ∈ R^d
and a bias b), N candidate items (candidate n is the encoded item n + 1, as in the environment), K slate.
"""

from __future__ import annotations

import itertools

import torch
from torch import nn

from recrl_cli.agents.config import AgentRunConfig
from recrl_cli.nets.layers import relu_dropout
from recrl_cli.sim.encoders import FieldRows, HistoryEncoder, RowEncoder
from recrl_cli.sim.environment import Observation
from recrl_cli.sim.response_model import NUM_BEHAVIOURS, UserResponseModel


class DNN(nn.Module):
    """KuaiSim's ``DNN``: per hidden size Linear → ReLU → Dropout → LayerNorm, then Linear(→ out): [..., in] ->
    [..., out]."""

    def __init__(self, in_dim: int, hidden: tuple[int, ...], out_dim: int, dropout: float) -> None:
        super().__init__()
        dims = (in_dim, *hidden)
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(dims))
        self.norms = nn.ModuleList(nn.LayerNorm(b) for b in hidden)
        self.out = nn.Linear(dims[-1], out_dim)
        self.dropout = dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer, norm in zip(self.hidden, self.norms, strict=True):
            x = norm(relu_dropout(layer(x), self.dropout, self.training))
        return self.out(x)


class StateEncoder(nn.Module):
    """The policy's own user-state encoder g_θ (§5.1; same design as the URM, separate parameters).

    The item kernel φ_θ(i) ∈ R^d encodes ids and features; the history transformer reads the history items'
    kernels with their 7 feedback labels; the state is s = [last transformer output (2d); user encoding (d)].
    The feature id tables are the response model's (shared tensors, not copies).
    """

    def __init__(self, model: UserResponseModel, cfg: AgentRunConfig) -> None:
        super().__init__()
        self.register_buffer("user_features", model.user_features, persistent=False)
        self.register_buffer("item_features", model.item_features, persistent=False)
        self.register_buffer("item_tags", model.item_tags, persistent=False)
        d, lat = cfg.enc_dim, cfg.latent
        items = FieldRows(model.num_items + 1, model.item_cards, lat, model.tag_cardinality)
        self.item_kernel = RowEncoder(items, lat, d, 0.0)
        self.user_kernel = RowEncoder(
            FieldRows(model.num_users + 1, model.user_cards, lat), lat, d, cfg.dropout
        )
        # The policy reads the last ``policy_history`` rows of the env's H-row history (0 = all H): the
        # transformer's cost grows with the window, and most of what identifies a user's taste is recent.
        # HRL-Rec builds its encoder from an agent config too, so it reads the same default window.
        self.window = min(cfg.policy_history or model.cfg.history_length, model.cfg.history_length)
        self.history = HistoryEncoder(d, self.window, cfg.n_heads, cfg.ff_dim, cfg.n_layers, cfg.dropout,
                                      NUM_BEHAVIOURS)  # fmt: skip
        self.state_dim = 3 * d
        # --item-encoder text (recrl_cli/text.attach.agent_text_factory): ids [N] -> text vectors [N, d].
        factory = getattr(model, "item_text_factory", None)
        self.item_text = factory(d) if factory is not None else None

    def item_table(self) -> torch.Tensor:
        """φ_θ of every encoded item 0..N: [N + 1, d] (row 0 = padding). Recomputed per call, as KuaiSim does,
        so the scorer and the inverse module always see the current kernel."""
        ids = torch.arange(self.item_features.shape[0], device=self.item_features.device)
        if self.item_text is None:
            return self.item_kernel(ids, self.item_features, self.item_tags)
        kernel_ids = ids if self.item_text.keep_ids else torch.zeros_like(ids)  # text: the id row is padding
        return self.item_kernel(kernel_ids, self.item_features, self.item_tags) + self.item_text(ids)

    def forward(self, obs: Observation, table: torch.Tensor) -> torch.Tensor:
        """obs of B users (histories [B, H]), table [N + 1, d] from :meth:`item_table` -> state [B, 3d]."""
        w = (
            self.window
        )  # the last w of the H history rows (oldest first, so the most recent are on the right)
        h = self.history(table[obs.items[:, -w:]], obs.feedback[:, -w:], obs.mask[:, -w:])
        u = self.user_kernel(obs.user, self.user_features[obs.user])
        return torch.cat([h, u], -1)


class HyperPolicy(nn.Module):
    """Actor: state s = g_θ(o), hyper-action Z = f_θ(s) = DNN(3d → hidden → d + 1) (§5.1)."""

    def __init__(self, model: UserResponseModel, cfg: AgentRunConfig) -> None:
        super().__init__()
        self.encoder = StateEncoder(model, cfg)
        self.action_dim = cfg.enc_dim + 1
        self.head = DNN(self.encoder.state_dim, cfg.action_hidden, self.action_dim, cfg.dropout)

    def forward(self, obs: Observation) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """-> (item table [N + 1, d], state [B, 3d], hyper-action Z [B, A])."""
        table = self.encoder.item_table()
        state = self.encoder(obs, table)
        return table, state, self.head(state)


def item_scores(hyper: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """score(i | Z) = w·φ(i) + b: hyper [B, A], kernels [N, d] (shared) or [B, K, d] (per row) -> [B, N] / [B, K]."""
    w, b = hyper[:, :-1], hyper[:, -1:]
    if kernels.dim() == 2:
        return w @ kernels.T + b
    return torch.einsum("bkd,bd->bk", kernels, w) + b


def top_k(hyper: torch.Tensor, table: torch.Tensor, k: int) -> torch.Tensor:
    """The effect action: the K candidates of highest score, LongTensor [B, K] in [0, N) (candidate n is
    table row n + 1)."""
    return item_scores(hyper, table[1:]).topk(k, dim=1).indices


def sample_k(hyper: torch.Tensor, table: torch.Tensor, k: int, temperature: float,
             generator: torch.Generator) -> torch.Tensor:  # fmt: skip
    """The sampled effect action: K distinct candidates per user drawn without replacement from
    softmax(score / temperature), LongTensor [B, K] in [0, N).

    Gumbel top-K: the K largest of score / τ + Gumbel(0, 1) noise are a sample without replacement of the
    softmax (Kool et al. 2019), one vectorised draw for all users."""
    scores = item_scores(hyper, table[1:]) / temperature
    uniform = torch.rand(scores.shape, generator=generator, device=scores.device)
    gumbel = -torch.log(-torch.log(uniform.clamp(1e-12, 1.0 - 1e-7)))
    return (scores + gumbel).topk(k, dim=1).indices


class QCritic(nn.Module):
    """Q(s, Z) = DNN(3d + A → hidden → 1) (§5.2): state [B, 3d], hyper [B, A] -> [B]."""

    def __init__(self, state_dim: int, action_dim: int, cfg: AgentRunConfig) -> None:
        super().__init__()
        self.net = DNN(state_dim + action_dim, cfg.critic_hidden, 1, cfg.dropout)

    def forward(self, state: torch.Tensor, hyper: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([state, hyper], -1)).squeeze(-1)


class VCritic(nn.Module):
    """V(s) = DNN(3d → hidden → 1) (§5.6, A2C): state [B, 3d] -> [B]."""

    def __init__(self, state_dim: int, cfg: AgentRunConfig) -> None:
        super().__init__()
        self.net = DNN(state_dim, cfg.critic_hidden, 1, cfg.dropout)

    def forward(self, state: torch.Tensor) -> torch.Tensor:
        return self.net(state).squeeze(-1)


class InverseModule(nn.Module):
    """HAC's h_ψ (§5.2): Ẑ(a) = (1/K) Σ_{i ∈ a} DNN(d → hidden → A)(φ_θ(i)): slate kernels [B, K, d] -> [B, A]."""

    def __init__(self, cfg: AgentRunConfig) -> None:
        super().__init__()
        self.net = DNN(cfg.enc_dim, cfg.inverse_hidden, cfg.enc_dim + 1, cfg.dropout)

    def forward(self, kernels: torch.Tensor) -> torch.Tensor:
        return self.net(kernels).mean(1)
