"""KuaiSim's whole-session environment (hac_kuaisim.md §4), batched and fully tensorised on one device.

B users are simulated in parallel. Each :meth:`WholeSessionEnv.step` takes a slate [B, K] per user and

1. scores it with the response model (one URM forward for the B histories), penalises correlated items,
   p_bi = max(0, P(b | i) − ρ·c_i) with c_i = (1/K) Σ_j cos(e_i, e_j) (faithful: / d as well, §8 #12), and
   samples the 7 behaviours y_bi ~ Bernoulli(p_bi). P(b | i) is the model's own σ(z), or σ(σ(z)) for a model
   fitted with the double sigmoid (§8 #1), so a model is simulated the way it was trained;
2. rewards r = mean_i Σ_b w_b y_bi (click only with ``single_response``);
3. updates the temper T ← T + clip(r − 2, −2, 0); the user leaves when T < 1 (§4.3, no step cap: §8 #11);
4. appends the K items with their sampled responses to the user's history, a ring buffer [B, H] written in
   place (the oldest K slots are overwritten; ``head`` points at the oldest slot);
5. replaces every leaver in place by a fresh user: a log row drawn uniformly from the start rows, whose user,
   real ≤ H-row history and logged labels become the new state (§4.2).

Nothing loops over users and nothing reads a value back to the host, so a step on CUDA never synchronises.
Fresh users are drawn for all B rows every step and kept only where a user left: the env's generator then
advances identically whatever happens, which keeps a seeded run reproducible.

Actions are candidate indices in [0, N) over all N items; candidate n is the encoded item n + 1 (KuaiSim's
convention, §4.1). Shapes: B users, K slate, H history, d = URM enc_dim, N items.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from recrl_cli.data.kuairand_tensors import RowTable, gather_history
from recrl_cli.sim.config import EnvConfig, env_switches
from recrl_cli.sim.data import KuaiRandData
from recrl_cli.sim.metrics import slate_cosines, slate_ild, slate_ild_pairwise
from recrl_cli.sim.play_time import sample_play_seconds
from recrl_cli.sim.response_model import UserResponseModel

CPU_USER_CHUNK = 16  # users per URM forward on the CPU (see WholeSessionEnv._behaviour_vectors)
# The play-time stream is seeded this far from the behaviour stream, so a model with or without a play-time head
# draws the same users and behaviours for one seed.
PLAY_SEED_OFFSET = 7_919
HATE = 6  # index of is_hate in BEHAVIOURS: its reward weight is negative without single_response


def response_weights(positive_rate: torch.Tensor, single_response: bool) -> torch.Tensor:
    """Reward weight of each behaviour [7]: click only, or KuaiSim's N_pos/N_neg ratios with hate negated (§4.1)."""
    if single_response:
        w = torch.zeros_like(positive_rate)
        w[0] = 1.0
        return w
    w = positive_rate / (1.0 - positive_rate).clamp(min=1e-12)
    w[HATE] = -w[HATE]
    return w


@dataclass(frozen=True)
class Observation:
    """What a policy sees of B users: user [B], items [B, H] (oldest first, left-padded with 0),
    feedback [B, H, 7] (0/1), mask [B, H] (True on real rows)."""

    user: torch.Tensor
    items: torch.Tensor
    feedback: torch.Tensor
    mask: torch.Tensor


@dataclass(frozen=True)
class StepResult:
    """One step of B users.

    Attributes:
        responses: FloatTensor [B, K, 7], the sampled 0/1 behaviours.
        probs: FloatTensor [B, K, 7], the probabilities they were sampled from (after the penalty).
        reward: FloatTensor [B], r_t of each user.
        done: BoolTensor [B], the user left at this step (their row already holds a fresh user).
        user_state: FloatTensor [B, 3d], the URM state the slate was scored in.
        next_observation: the same users after this step (before any replacement): a replay buffer's s'.
        depth: LongTensor [B], steps taken by each user including this one (a leaver's final depth).
        total_reward: FloatTensor [B], each user's Σ r including this step (a leaver's total reward).
        coverage: 0-dim LongTensor, distinct items in the B × K action.
        ild: 0-dim, KuaiSim's ILD 1 − (1/(B K² d)) Σ_b Σ_ij cos (§6.1).
        ild_pairwise: 0-dim, 1 − mean over users of the mean off-diagonal cosine (a readable ILD, §8 #12).
        play_seconds: FloatTensor [B, K], sampled play time (0 without a click; see
            :mod:`recrl_cli.sim.play_time`), or None for a response model without a play-time head.
    """

    responses: torch.Tensor
    probs: torch.Tensor
    reward: torch.Tensor
    done: torch.Tensor
    user_state: torch.Tensor
    next_observation: Observation
    depth: torch.Tensor
    total_reward: torch.Tensor
    coverage: torch.Tensor
    ild: torch.Tensor
    ild_pairwise: torch.Tensor
    play_seconds: torch.Tensor | None = None


class WholeSessionEnv:
    """The environment; see the module docstring.

    Args:
        model: a (trained) response model. The env freezes it (``requires_grad_(False)``), sets its mode (eval, or
            train with ``dropout_in_simulation``) and caches its item encodings once.
        cfg: env settings and switches.
        table: the row table fresh users' histories come from.
        start_rows: LongTensor [S], the rows a fresh user may start from (drawn uniformly, with replacement).
        weights: reward weight per behaviour [7] (see :func:`response_weights`).
    """

    def __init__(self, model: UserResponseModel, cfg: EnvConfig, table: RowTable, start_rows: torch.Tensor,
                 weights: torch.Tensor) -> None:  # fmt: skip
        self.device = model.item_features.device
        self.model, self.cfg, self.table = model, cfg, table.to(self.device)
        self.switches = env_switches(cfg)
        if len(start_rows) == 0:
            raise ValueError("the environment needs at least one start row")
        if cfg.slate_size > model.cfg.history_length:
            raise ValueError(
                f"slate size {cfg.slate_size} exceeds the history length {model.cfg.history_length}"
            )
        self.start_rows = start_rows.to(self.device)
        self.weights = weights.to(self.device, torch.float32)
        # Behaviours that earn reward: the oracle scores only these (click alone with single_response).
        self._rewarded = torch.nonzero(self.weights).squeeze(1)
        self.num_items, self.slate, self.batch = model.num_items, cfg.slate_size, cfg.batch_users
        self.history_length = h = model.cfg.history_length
        self.model.requires_grad_(False)
        self.model.train(self.switches["dropout_in_simulation"])  # §8 #9: KuaiSim never calls eval()
        with torch.no_grad():  # the item encoder has no dropout: its encodings are the same in either mode
            self.item_enc = model.item_table()  # [N + 1, d]
        self.item_unit = F.normalize(self.item_enc, dim=-1)
        self.generator = torch.Generator(self.device).manual_seed(cfg.seed)
        # Play time draws from its own stream, so a model with or without the head simulates the same users
        # and behaviours for the same seed.
        self.play_generator = torch.Generator(self.device).manual_seed(cfg.seed + PLAY_SEED_OFFSET)
        b, dev = self.batch, self.device
        self.user = torch.zeros(b, dtype=torch.long, device=dev)
        self.origin = torch.zeros(b, dtype=torch.long, device=dev)  # the log row each user started from
        self.ring_items = torch.zeros(b, h, dtype=torch.long, device=dev)
        self.ring_feedback = torch.zeros(b, h, 7, device=dev)
        self.head = torch.zeros(b, dtype=torch.long, device=dev)  # the oldest slot = the next one written
        self.length = torch.zeros(b, dtype=torch.long, device=dev)
        self.temper = torch.zeros(b, device=dev)
        self.steps = torch.zeros(b, dtype=torch.long, device=dev)
        self.total = torch.zeros(b, device=dev)
        self._positions = torch.arange(h, device=dev)
        self._obs: Observation | None = None
        self._vectors: tuple[torch.Tensor, torch.Tensor] | None = None
        self.reset()

    @classmethod
    def from_data(cls, model: UserResponseModel, data: KuaiRandData, cfg: EnvConfig) -> WholeSessionEnv:
        """The env KuaiSim builds (§4.1): start rows from ``cfg.start_split``, reward weights from the
        positive rates of all rows (KuaiSim's reader loads every row when building the env)."""
        n = data.rows.num_rows
        rows = torch.arange(n) if cfg.start_split == "all" else data.splits[cfg.start_split]
        rate = data.rows.labels.float().mean(0)
        return cls(model, cfg, data.rows, rows, response_weights(rate, cfg.single_response))

    # -- state -----------------------------------------------------------------------------------------------------
    def reset(self) -> Observation:
        """Fresh users in every row (temper T₀, step 0); returns their observation."""
        self._replace(torch.ones(self.batch, dtype=torch.bool, device=self.device))
        return self.observation()

    def _replace(self, leave: torch.Tensor) -> None:
        """Put fresh users into the rows where ``leave`` [B] is True, in place."""
        pick = torch.randint(
            len(self.start_rows), (self.batch,), generator=self.generator, device=self.device
        )
        rows = self.start_rows[pick]
        hist = gather_history(self.table, rows, self.history_length, same_request=self.model.cfg.same_request)
        keep = leave[:, None]
        self.user.copy_(torch.where(leave, self.table.user[rows], self.user))
        self.origin.copy_(torch.where(leave, rows, self.origin))
        # A fresh history is written left-padded from slot 0, so head = 0 makes the ring read it in order.
        self.ring_items.copy_(torch.where(keep, hist.items, self.ring_items))
        self.ring_feedback.copy_(torch.where(keep[..., None], hist.feedback, self.ring_feedback))
        self.head.masked_fill_(leave, 0)
        self.length.copy_(torch.where(leave, hist.lengths, self.length))
        self.temper.masked_fill_(leave, self.cfg.initial_temper)
        self.steps.masked_fill_(leave, 0)
        self.total.masked_fill_(leave, 0.0)
        self._obs = self._vectors = None

    # The users' state, everything a step reads or writes: saved for an exact mid-run resume.
    _STATE = ("user", "origin", "ring_items", "ring_feedback", "head", "length", "temper", "steps", "total")

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The B users' state tensors (on the CPU) and the states of the env's two generators."""
        return {
            **{k: getattr(self, k).cpu().clone() for k in self._STATE},
            "generator": self.generator.get_state(),
            "play_generator": self.play_generator.get_state(),
        }

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore :meth:`state_dict` in place (same B and H); cached observations are dropped."""
        for k in self._STATE:
            getattr(self, k).copy_(state[k])
        self.generator.set_state(state["generator"])
        if "play_generator" in state:  # checkpoints written before the play-time head have none
            self.play_generator.set_state(state["play_generator"])
        self._obs = self._vectors = None

    def observation(self) -> Observation:
        """The current users' observation (oldest history row first), gathered from the ring buffers."""
        if self._obs is None:
            h = self.history_length
            order = (
                self.head[:, None] + self._positions
            ) % h  # [B, H] ring slot of each chronological position
            self._obs = Observation(
                user=self.user.clone(), items=self.ring_items.gather(1, order),
                feedback=self.ring_feedback.gather(1, order[..., None].expand(-1, -1, 7)),
                mask=self._positions >= (h - self.length)[:, None],
            )  # fmt: skip
        return self._obs

    @torch.no_grad()
    def _behaviour_vectors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(URM state [B, 3d], behaviour vectors A [B, 7, d]) of the current users, computed once per step.

        On the CPU the users go through the URM in slices of ``CPU_USER_CHUNK``: a slice's activations
        ([chunk·H, 2d] per tensor) stay in cache, which measured ~25 % faster than one pass over B = 32.
        """
        if self._vectors is None:
            obs = self.observation()
            step = CPU_USER_CHUNK if self.device.type == "cpu" else self.batch
            states = [
                self.model.user_state(obs.user[s : s + step], self.item_enc[obs.items[s : s + step]],
                                      obs.feedback[s : s + step], obs.mask[s : s + step])
                for s in range(0, self.batch, step)
            ]  # fmt: skip
            state = torch.cat(states) if len(states) > 1 else states[0]
            self._vectors = (state, self.model.behaviour_vectors(state))
        return self._vectors

    def user_vectors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(URM state [B, 3d], behaviour vectors [B, 7, d (+ t)]) of the current users, as :meth:`step` scores
        them (computed once per step and shared by every caller)."""
        return self._behaviour_vectors()

    @torch.no_grad()
    def expected_reward(self) -> torch.Tensor:
        """E[r contribution] of every candidate for the current users, [B, N]: Σ_b w_b P(b | i) without the
        correlation penalty (what the oracle-greedy calibration policy ranks by)."""
        _, vectors = self._behaviour_vectors()
        j = self._rewarded
        z = self.model.score_all(vectors[:, j], self.item_enc[1:], j)  # [B, N, J]
        return (self.model.probabilities(z) * self.weights[j]).sum(-1)

    @torch.no_grad()
    def predict(self, candidates: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """What the response model predicts for showing each of ``candidates`` [B, C] (indices in [0, N)) to the
        current users, before the correlation penalty and any draw: (behaviour probabilities [B, C, 7], play-time
        bin logits given a click [B, C, M + 1], None without the head). :meth:`step` samples from these."""
        state, vectors = self._behaviour_vectors()
        enc = self.item_enc[candidates.to(self.device) + 1]
        probs = self.model.probabilities(self.model.score(vectors, enc))
        if not self.model.has_play_time:
            return probs, None
        return probs, self.model.play_logits(self.model.play_vectors(state), enc)

    # -- the step --------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def step(self, action: torch.Tensor) -> StepResult:
        """Simulate one slate per user: action LongTensor [B, K] of candidate indices in [0, N)."""
        if action.shape != (self.batch, self.slate):
            raise ValueError(
                f"action must have shape ({self.batch}, {self.slate}), got {tuple(action.shape)}"
            )
        items = action.to(self.device) + 1  # [B, K] encoded ids
        state, _ = self._behaviour_vectors()
        probs, play_logits = self.predict(action)  # [B, K, 7], [B, K, M + 1] | None
        cos = slate_cosines(self.item_unit[items])  # [B, K, K]
        d = self.model.cfg.enc_dim
        corr = cos.mean(-1)  # [B, K]
        if self.switches["correlation_mean_over_dim"]:  # KuaiSim: subtract ρ·c/d from every probability
            p = (probs - self.cfg.item_correlation * corr[..., None] / d).clamp(min=0.0)
        else:  # scale, not subtract: ρ·c ≈ 0.17 taken off a 0.002 comment rate would erase every rare behaviour
            p = probs * (1.0 - self.cfg.item_correlation * corr[..., None]).clamp(min=0.0)
        draw = torch.rand(p.shape, generator=self.generator, device=self.device)
        y = (draw < p).float()
        play = None
        if play_logits is not None:
            play = sample_play_seconds(play_logits, y, self.model.play_edges, self.play_generator)
        reward = (y @ self.weights).mean(1)  # [B]
        self.temper.add_((reward - 2.0).clamp(-2.0, 0.0))
        done = self.temper < 1.0
        self.steps.add_(1)
        self.total.add_(reward)
        # Append the slate (clicked or not) with its sampled responses: overwrite the K oldest ring slots.
        h = self.history_length
        slots = (self.head[:, None] + self._positions[: self.slate]) % h  # [B, K]
        self.ring_items.scatter_(1, slots, items)
        self.ring_feedback.scatter_(1, slots[..., None].expand(-1, -1, 7), y)
        self.head.copy_((self.head + self.slate) % h)
        self.length.copy_((self.length + self.slate).clamp(max=h))
        self._obs = self._vectors = None
        next_obs = self.observation()
        depth, total = self.steps.clone(), self.total.clone()
        self._replace(done)
        seen = torch.zeros(self.num_items + 1, dtype=torch.bool, device=self.device)
        coverage = seen.scatter_(0, items.flatten(), True).sum()
        return StepResult(responses=y, probs=p, reward=reward, done=done, user_state=state,
                          next_observation=next_obs, depth=depth, total_reward=total, coverage=coverage,
                          ild=slate_ild(cos, d), ild_pairwise=slate_ild_pairwise(cos),
                          play_seconds=play)  # fmt: skip
