"""The HRL-Rec agent: channel selector (LRA, low level) + item recommender (HRA, high level), both DDPG-style.

Acting builds a list of T positions left to right. At position t the selector's actor maps (user state, items
and channels placed so far) to a point in the channel embedding space (the proto-action); among the
``channel_knn`` channels nearest to it (0 = all) that still have an unplaced candidate, the channel with the
highest low-critic value Q_L(s_t, e_c) is chosen (Wolpertinger: Dulac-Arnold et al. 2015, "Deep RL in large
discrete action spaces", the standard way to act with DDPG over embedded discrete actions; the released LRA does
not say how its action becomes a channel, unifiedrl_hrlrec.md B2). The recommender's actor, given that channel
too, maps to a point in the item embedding space; the item is the arg-max dot product over the chosen channel's
candidates not yet in the list. Both constraints (item from the chosen channel, no repeats) are enforced by
masking, never by rejection. Exploration (training only) adds truncated-normal noise N(0, σ²) cut at ±2σ to
both actions (the released LRA's scheme; its σ = 0.01 is on unnormalised embeddings, ours default 0.2 on unit
ones) and, with probability ``channel_epsilon`` per user and position, a uniformly random available channel
(with k = all channels the proto-action's noise no longer moves the choice, so ε is the selector's exploration).

Why the critic chooses (benchmarks/HRLREC_NOTES.md, "channel collapse"): with the nearest channel to the
actor's point (``channel_knn=1``, the earlier rule) the selector put 85–100 % of its impressions in one channel
per seed, with or without the supervised/similarity losses. The point drifts to a state-independent spot (the
DDPG gradient pushes it into a corner of the tanh box, the supervised loss towards the mean of the clicked
embeddings) and its nearest channel is then the same everywhere, whatever the critic has learned; even a
channel-switch reward of 0.5 did not reach the choices. Acting on Q lets the selector's own reward (B4's
channel-level term, ``switch_weight``) decide the channel mix.

Learning (:meth:`HRLAgent.update`) takes a :class:`ListBatch` (simulated or logged lists) and makes one critic
step and one actor step per level with the four losses of :mod:`recrl_cli.hrlrec.losses`; the targets follow by
soft updates τ every ``target_every`` steps. The critics train the shared user-state encoder; the actors read it
detached. ``hierarchical=False`` is the flat list-wise DDPG baseline: no selector, the recommender picks from the
union of all candidate lists and sees no channel inputs.

Shapes: B lists, T positions, e action embedding, C channels, M candidates per channel, N items, P pool.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from recrl_cli.agents.config import agent_config
from recrl_cli.agents.networks import StateEncoder
from recrl_cli.errors import ConfigError
from recrl_cli.hrlrec.channels import Channels
from recrl_cli.hrlrec.losses import actor_loss, similarity_loss, supervised_loss, td_loss
from recrl_cli.hrlrec.networks import ListActor, ListCritic, ListEncoder, action_tables, shift_right
from recrl_cli.sim.environment import Observation

LOSS_SETS = ("full", "no-sup", "no-sim", "ddpg-only")


@dataclass(frozen=True)
class ListBatch:
    """B lists: obs (the user before the list), items / channels [B, T], r_low / r_high / click [B, T]."""

    obs: Observation
    items: torch.Tensor
    channels: torch.Tensor
    r_low: torch.Tensor
    r_high: torch.Tensor
    click: torch.Tensor


def truncated_noise(shape, std: float, generator: torch.Generator, device) -> torch.Tensor:
    """N(0, σ²) truncated at ±2σ (resampled, not clipped), [shape]."""
    out = torch.empty(shape, device=device)
    if std <= 0:
        return out.zero_()
    return nn.init.trunc_normal_(out, 0.0, std, -2 * std, 2 * std, generator=generator)


class HRLAgent:
    """See the module docstring. ``cfg`` is a :class:`recrl_cli.hrlrec.algorithm.HRLRecConfig`."""

    def __init__(self, model, items, channels: Channels, cfg, seed: int, hierarchical: bool = True) -> None:
        dev = model.item_features.device
        self.cfg, self.channels, self.hierarchical, self.device = cfg, channels, hierarchical, dev
        self.T = cfg.list_length
        if cfg.losses not in LOSS_SETS:
            raise ConfigError(f"losses must be one of {', '.join(LOSS_SETS)}, got {cfg.losses!r}")
        self.pool = channels.pool()
        if len(self.pool) < self.T:
            raise ConfigError(f"only {len(self.pool)} candidates in all channels; a list needs {self.T}")
        self.item_emb, self.chan_emb = action_tables(items, channels.num_channels, cfg.action_dim, seed)
        self.sizes = channels.valid.sum(1)  # [C]
        self.generator = torch.Generator(dev).manual_seed(seed)
        self.updates = 0
        e, d = cfg.action_dim, cfg.enc_dim
        ac = agent_config("ddpg", latent=cfg.latent, enc_dim=cfg.enc_dim, n_heads=cfg.n_heads, ff_dim=cfg.ff_dim,
                          n_layers=cfg.n_layers, dropout=cfg.dropout)  # fmt: skip
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            user = StateEncoder(model, ac)
            s = user.state_dim

            def enc(current: bool) -> ListEncoder:
                return ListEncoder(s, e, d, cfg.n_heads, self.T, current, cfg.dropout)

            nets = {"user": user, "high_actor": ListActor(enc(hierarchical), d, e),
                    "high_critic": ListCritic(enc(hierarchical), d, e, cfg.hidden, "item", cfg.prefix_similarity)}  # fmt: skip
            if hierarchical:
                nets["low_actor"] = ListActor(enc(False), d, e)
                nets["low_critic"] = ListCritic(
                    enc(False), d, e, cfg.hidden, "channel", cfg.prefix_similarity
                )
        self.nets = nn.ModuleDict(nets).to(dev)
        self.target = copy.deepcopy(self.nets).eval().requires_grad_(False)
        actors = [p for n, m in self.nets.items() if n.endswith("actor") for p in m.parameters()]
        critics = [p for n, m in self.nets.items() if not n.endswith("actor") for p in m.parameters()]
        self.actor_opt = torch.optim.Adam(actors, lr=cfg.actor_lr)
        self.critic_opt = torch.optim.Adam(critics, lr=cfg.critic_lr)

    # -- acting ------------------------------------------------------------------------------------------------
    def _noise(self, a: torch.Tensor, explore: bool) -> torch.Tensor:
        return a + truncated_noise(a.shape, self.cfg.noise_std, self.generator, a.device) if explore else a

    def _refine(self, dot: torch.Tensor, state, prev_i, prev_c, t: int) -> torch.Tensor:
        """Channel scores [B, C]: the low critic's Q(s_t, e_c) on the k channels with the highest dot product
        with the actor's point ``dot`` [B, C] (−inf on unavailable channels, so the k are the nearest available
        ones), −inf elsewhere (k = ``channel_knn``, 0 = all channels)."""
        q = self.nets["low_critic"].q_of(state, prev_i, prev_c, self.chan_emb, t)  # [B, C]
        k = self.cfg.channel_knn
        if k == 0 or k >= dot.shape[1]:
            return q
        near = torch.zeros_like(dot, dtype=torch.bool).scatter_(1, dot.topk(k, 1).indices, True)
        return q.masked_fill(~near, float("-inf"))

    @torch.no_grad()
    def act(self, obs: Observation, explore: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """(items [B, T] candidate indices, the channel chosen for each position [B, T]) for B users; dropout
        off. A flat agent chooses no channel: its second output is the items' channels."""
        self.nets.eval()
        n, t_len, e = self.item_emb.shape[0], self.T, self.item_emb.shape[1]
        state = self.nets["user"](obs, self.nets["user"].item_table())
        b = state.shape[0]
        prev_i = torch.zeros(b, t_len, e, device=self.device)
        prev_c, cur_c = torch.zeros_like(prev_i), torch.zeros_like(prev_i)
        placed = torch.zeros(b, n, dtype=torch.bool, device=self.device)
        used = torch.zeros(b, self.channels.num_channels, dtype=torch.long, device=self.device)
        items = torch.zeros(b, t_len, dtype=torch.long, device=self.device)
        chosen = torch.zeros_like(items)
        rows = torch.arange(b, device=self.device)
        pool_emb = self.item_emb[self.pool]
        for t in range(t_len):  # positions are sequential decisions; everything inside is batched over users
            p = slice(0, t + 1)
            if self.hierarchical:
                a_low = self._noise(self.nets["low_actor"](state, prev_i[:, p], prev_c[:, p])[:, t], explore)
                full = used >= self.sizes  # [B, C] channels with no unplaced candidate
                score = (a_low @ self.chan_emb.T).masked_fill(full, float("-inf"))
                if self.cfg.channel_knn != 1:  # Wolpertinger: the critic picks among the k nearest channels
                    score = self._refine(score, state, prev_i[:, p], prev_c[:, p], t).masked_fill(
                        full, float("-inf")
                    )
                if explore and self.cfg.channel_epsilon > 0:  # ε-greedy channel: a random score for the row
                    coin = (
                        torch.rand(b, 1, generator=self.generator, device=self.device)
                        < self.cfg.channel_epsilon
                    )
                    noise = torch.rand(score.shape, generator=self.generator, device=self.device)
                    score = torch.where(coin, noise, score)
                score = score.masked_fill(used >= self.sizes, float("-inf"))
                c = score.argmax(1)
                cur_c[:, t] = self.chan_emb[c]
                a_high = self._noise(
                    self.nets["high_actor"](state, prev_i[:, p], prev_c[:, p], cur_c[:, p])[:, t], explore
                )
                cand = self.channels.candidates[c]  # [B, M]
                ok = self.channels.valid[c] & ~placed.gather(1, cand.clamp(min=0))
                score = torch.einsum("bme,be->bm", self.item_emb[cand.clamp(min=0)], a_high)
            else:
                a_high = self._noise(
                    self.nets["high_actor"](state, prev_i[:, p], prev_c[:, p])[:, t], explore
                )
                cand = self.pool.expand(b, -1)
                ok = ~placed[:, self.pool]
                score = a_high @ pool_emb.T
            d = cand[rows, score.masked_fill(~ok, float("-inf")).argmax(1)]
            chan = self.channels.channel_of[d]
            placed[rows, d] = True
            used[rows, chan] += 1
            items[:, t] = d
            chosen[:, t] = c if self.hierarchical else chan
            if t + 1 < t_len:
                prev_i[:, t + 1] = self.item_emb[d]
                if self.hierarchical:
                    prev_c[:, t + 1] = self.chan_emb[chan]
        return items, chosen

    # -- learning ----------------------------------------------------------------------------------------------
    def _clip_step(self, opt: torch.optim.Optimizer, loss: torch.Tensor) -> None:
        opt.zero_grad(set_to_none=True)
        loss.backward()
        params = [p for g in opt.param_groups for p in g["params"]]
        nn.utils.clip_grad_norm_(params, self.cfg.grad_clip)
        opt.step()

    def update(self, batch: ListBatch) -> dict[str, torch.Tensor]:
        """One critic and one actor step on B lists; the detached losses (0-dim tensors)."""
        cfg, nets, tgt = self.cfg, self.nets, self.target
        nets.train()
        state = nets["user"](batch.obs, nets["user"].item_table())
        with torch.no_grad():
            t_state = tgt["user"](batch.obs, tgt["user"].item_table())
        ei = self.item_emb[batch.items]
        ec = self.chan_emb[batch.channels] if self.hierarchical else torch.zeros_like(ei)
        pi, pc = shift_right(ei), shift_right(ec)
        cur = ec if self.hierarchical else None
        out: dict[str, torch.Tensor] = {}
        # Critic: SARSA-style TD on the executed / logged actions.
        critic = td_loss(nets["high_critic"](state, pi, pc, ei, cur),
                         tgt["high_critic"](t_state, pi, pc, ei, cur), batch.r_high, cfg.gamma)  # fmt: skip
        out["critic_high"] = critic.detach()
        if self.hierarchical:
            low = td_loss(nets["low_critic"](state, pi, pc, ec), tgt["low_critic"](t_state, pi, pc, ec),
                          batch.r_low, cfg.gamma)  # fmt: skip
            out["critic_low"] = low.detach()
            critic = critic + low
        self._clip_step(self.critic_opt, critic)
        # Actor: DDPG + supervised + similarity, per level.
        s = state.detach()
        w = batch.click
        use_sup = cfg.losses in ("full", "no-sim")
        use_sim = cfg.losses in ("full", "no-sup")
        mu = nets["high_actor"](s, pi, pc, cur)
        act = actor_loss(nets["high_critic"](s, pi, pc, mu, cur))
        out["actor_high"] = act.detach()
        if use_sup:
            sup = supervised_loss(mu, ei, w)
            out["sup_high"], act = sup.detach(), act + cfg.sup_coef * sup
        if use_sim:
            if self.hierarchical:
                cand = self.channels.candidates[batch.channels]  # [B, T, M]
                exclude = ~self.channels.valid[batch.channels] | (cand == batch.items[..., None])
                sim = similarity_loss(
                    mu, ei, self.item_emb[cand.clamp(min=0)], exclude, w, cfg.sim_temperature
                )
            else:
                exclude = self.pool == batch.items[..., None]
                sim = similarity_loss(mu, ei, self.item_emb[self.pool], exclude, w, cfg.sim_temperature)
            out["sim_high"], act = sim.detach(), act + cfg.sim_coef * sim
        if self.hierarchical:
            mu_l = nets["low_actor"](s, pi, pc)
            act_l = actor_loss(nets["low_critic"](s, pi, pc, mu_l))
            out["actor_low"] = act_l.detach()
            if use_sup:
                sup_l = supervised_loss(mu_l, ec, w)
                out["sup_low"], act_l = sup_l.detach(), act_l + cfg.sup_coef * sup_l
            if use_sim:
                exclude = nn.functional.one_hot(batch.channels, self.channels.num_channels).bool()
                sim_l = similarity_loss(mu_l, ec, self.chan_emb, exclude, w, cfg.sim_temperature)
                out["sim_low"], act_l = sim_l.detach(), act_l + cfg.sim_coef * sim_l
            act = act + act_l
        self._clip_step(self.actor_opt, act)
        self.updates += 1
        if self.updates % cfg.target_every == 0:
            with torch.no_grad():
                for p, tp in zip(nets.parameters(), tgt.parameters(), strict=True):
                    tp.lerp_(p, cfg.tau)
        return out

    def parameters(self) -> list[torch.Tensor]:
        return list(self.nets.parameters())

    # -- persistence -------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"nets": self.nets.state_dict(), "target": self.target.state_dict(),
                "actor_opt": self.actor_opt.state_dict(), "critic_opt": self.critic_opt.state_dict(),
                "generator": self.generator.get_state(), "updates": self.updates}  # fmt: skip

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.nets.load_state_dict(state["nets"])
        self.target.load_state_dict(state["target"])
        self.actor_opt.load_state_dict(state["actor_opt"])
        self.critic_opt.load_state_dict(state["critic_opt"])
        self.generator.set_state(state["generator"])
        self.updates = state["updates"]
