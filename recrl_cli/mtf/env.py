"""The multi-task fusion environment: one step = one request of B users, fully tensorised (no per-user loops).

Per request (unifiedrl_hrlrec.md A6 step 4):

1. **Candidates** [B, C], C = ``retrieved`` + ``random``: the top ``retrieved`` items of a cheap retriever (dot
   product of the ranker's item encodings with the click-weighted mean encoding of the user's history) plus
   ``random`` distinct pool items not among them (so every candidate is distinct).
2. **Ranker scores** [B, C, k]: the ranker (a trained response model with a play-time head, see
   :mod:`recrl_cli.mtf.fusion`, or an MTL base trained on KuaiRand, :mod:`recrl_cli.mtf.mtl_ranker`) gives the
   k = 5 fusion targets of every candidate.
3. **Fusion**: the action [B, A] in [−1, 1]^A becomes powers and biases (:class:`ActionMap`), the candidates are
   ranked by Σ power·log(pred + bias) and the top K form the slate (distinct by construction).
4. **User**: the ground-truth simulator (:class:`WholeSessionEnv`: 7 behaviours, play seconds, temper leave
   model) answers the slate; leavers are replaced by fresh users in place.
5. **Reward** [B, 2] (Eq. 2 with the v6 split): column 0 the watch-time part w_wt·Σ_j play_j / 60 s, column 1 the
   rest Σ_j [w_vc·1(play_j > 10 s) + w_lk·like + w_fo·follow + w_cm·comment + w_fw·forward − w_ht·hate].

The learners' state [B, S] is built from the ranker and the logged history only (never from the simulator's
internals): the ranker's user state [3·d_r], the mean of the 7 feedback flags over the history [7], the filled
share of the history window [1] and the request depth / 20 [1]. The last 9 columns are the "profile" features
the ES behaviour policy reads.

Shapes: B users, C candidates, K slate, k = 5 targets, A = 10, N items, d_r ranker width.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from recrl_cli.mtf.fusion import TARGETS, ActionMap, fused_log_scores, fusion_targets
from recrl_cli.sim.environment import WholeSessionEnv
from recrl_cli.sim.play_time import VALID_SECONDS, click_play_expectations
from recrl_cli.sim.response_model import UserResponseModel

PROFILE_DIM = 9  # feedback means [7] + history fill [1] + depth [1]
DEPTH_SCALE = 20.0  # requests; KuaiSim's session cap, so depth / 20 stays near [0, 1]
# (valid consumption, watch minute, like, follow, comment, forward, hate): A6 step 5's documented fallback.
FALLBACK_WEIGHTS = (1.0, 0.5, 2.0, 3.0, 2.0, 2.0, 5.0)
_CLICK, _LIKE, _COMMENT, _FORWARD, _FOLLOW, _HATE = 0, 2, 3, 4, 5, 6  # BEHAVIOURS indices


def item_rewards(responses: Tensor, play: Tensor, weights: Tensor) -> tuple[Tensor, Tensor]:
    """Per-item reward parts: responses [..., 7] (0/1), play [...] seconds, weights [7] (see
    :data:`FALLBACK_WEIGHTS` order) -> (watch part [...], rest part [...])."""
    watch = weights[1] * play / 60.0
    rest = (weights[0] * (play > VALID_SECONDS).float() + weights[2] * responses[..., _LIKE]
            + weights[3] * responses[..., _FOLLOW] + weights[4] * responses[..., _COMMENT]
            + weights[5] * responses[..., _FORWARD] - weights[6] * responses[..., _HATE])  # fmt: skip
    return watch, rest


def expected_item_rewards(probs: Tensor, play_logits: Tensor, edges: Tensor, weights: Tensor) -> Tensor:
    """E[watch + rest] of :func:`item_rewards` for each item when the 7 responses are drawn independently with
    ``probs`` [..., 7] and play time as the simulator samples it (play_logits [..., M + 1] given a click, bin
    ``edges`` [M]; :func:`recrl_cli.sim.play_time.click_play_expectations`) -> [...]."""
    click = probs[..., _CLICK]
    seconds, valid = click_play_expectations(play_logits, edges, probs, VALID_SECONDS)
    watch = weights[1] * click * seconds / 60.0
    rest = (weights[0] * click * valid + weights[2] * probs[..., _LIKE] + weights[3] * probs[..., _FOLLOW]
            + weights[4] * probs[..., _COMMENT] + weights[5] * probs[..., _FORWARD]
            - weights[6] * probs[..., _HATE])  # fmt: skip
    return watch + rest


@dataclass(frozen=True)
class Request:
    """What the env shows the policy for one request: state [B, S], candidates [B, C] (item indices in [0, N)),
    preds [B, C, k] (fusion targets), user [B] (encoded user ids), depth [B] (requests so far in the session)."""

    state: Tensor
    candidates: Tensor
    preds: Tensor
    user: Tensor
    depth: Tensor


@dataclass(frozen=True)
class FusionStep:
    """One request's outcome: slate [B, K] (positions in the candidates), items [B, K], responses [B, K, 7],
    play [B, K] seconds, reward [B, 2] (watch, rest), done [B] (the user left; the row holds a fresh user)."""

    request: Request
    slate: Tensor
    items: Tensor
    responses: Tensor
    play: Tensor
    reward: Tensor
    done: Tensor


class FusionEnv:
    """See the module docstring. ``sim`` must have a play-time head; ``ranker`` too (it may be ``sim.model``)."""

    def __init__(self, sim: WholeSessionEnv, ranker: UserResponseModel, *, retrieved: int, random: int,
                 weights: tuple[float, ...] = FALLBACK_WEIGHTS, action_map: ActionMap | None = None) -> None:  # fmt: skip
        if not sim.model.has_play_time or not ranker.has_play_time:
            raise ValueError("multi-task fusion needs a simulator and a ranker with a play-time head")
        if ranker.num_items != sim.num_items:
            raise ValueError(f"ranker has {ranker.num_items} items, the simulator {sim.num_items}")
        if len(weights) != 7:
            raise ValueError(f"reward weights need 7 values (vc, watch, like, follow, comment, forward, hate), "
                             f"got {len(weights)}")  # fmt: skip
        if retrieved < 1 or random < 0 or retrieved + random > sim.num_items:
            raise ValueError(f"need 1 <= retrieved and retrieved + random <= {sim.num_items} items, "
                             f"got {retrieved} + {random}")  # fmt: skip
        if retrieved + random < sim.slate:
            raise ValueError(f"{retrieved + random} candidates cannot fill a slate of {sim.slate}")
        self.sim, self.ranker, self.retrieved, self.random = sim, ranker, retrieved, random
        self.device, self.batch, self.slate = sim.device, sim.batch, sim.slate
        self.weights = torch.tensor(weights, dtype=torch.float32, device=self.device)
        self.action_map = action_map or ActionMap()
        ranker.requires_grad_(False)
        ranker.eval()
        with torch.no_grad():
            self.item_enc = ranker.item_table()  # [N + 1, d_r]
        self.history = min(ranker.cfg.history_length, sim.history_length)
        # Without --ranker the ranker is the simulator's model (in eval mode now, like the simulator): its user
        # state is the one the simulator computes for the step anyway (bit for bit: same inputs and weights).
        self._shared = ranker is sim.model and self.history == sim.history_length
        # The taste-free view (recrl_cli.mtf.ranker) of the simulator: the same weights except the user taste rows,
        # so its state is the simulator's with the last t columns (p_u) set to the mean row; no second pass either
        # (not when the simulator runs with dropout, whose state the eval-mode view would not reproduce).
        self._taste_free = (getattr(ranker, "taste_free_of", None) is sim.model and self.history == sim.history_length
                            and not sim.switches["dropout_in_simulation"])  # fmt: skip
        self._request: Request | None = None

    @property
    def state_dim(self) -> int:
        return self.ranker.state_dim + PROFILE_DIM

    @property
    def action_dim(self) -> int:
        return 2 * len(TARGETS)

    def reset(self) -> Request:
        self.sim.reset()
        self._request = None
        return self.request()

    @torch.no_grad()
    def request(self) -> Request:
        """The current request of every user (computed once per step)."""
        if self._request is None:
            obs = self.sim.observation()
            h = self.history
            items, fb, mask = obs.items[:, -h:], obs.feedback[:, -h:], obs.mask[:, -h:]
            enc = self.item_enc[items]  # [B, H, d]
            if self._shared:  # the same model over the same history: the simulator's pass, not a second one
                r_state, vectors = self.sim.user_vectors()
            elif self._taste_free:
                sim_state, _ = self.sim.user_vectors()
                t = self.ranker.taste_dim
                mean_taste = self.ranker.user_taste.weight[:1].expand(sim_state.shape[0], -1)
                r_state = torch.cat([sim_state[:, :-t], mean_taste], -1)  # [B, 3d + t]
                vectors = self.ranker.behaviour_vectors(r_state)
            else:
                r_state = self.ranker.user_state(obs.user, enc, fb, mask)  # [B, 3d]
                vectors = self.ranker.behaviour_vectors(r_state)
            m = mask.float()
            filled = m.sum(1, keepdim=True)
            fb_mean = (fb * m[..., None]).sum(1) / filled.clamp(min=1.0)  # [B, 7]
            depth = self.sim.steps.clone()
            state = torch.cat([r_state, fb_mean, filled / h, depth[:, None].float() / DEPTH_SCALE], -1)
            # Retriever: click-weighted mean history encoding against every item.
            weight = m * (1.0 + fb[..., 0])
            interest = (enc * weight[..., None]).sum(1) / weight.sum(1, keepdim=True).clamp(min=1.0)
            sim_all = interest @ self.item_enc[1:].T  # [B, N]
            top = sim_all.topk(self.retrieved, dim=1).indices
            if self.random:
                noise = torch.rand(sim_all.shape, generator=self.sim.generator, device=self.device)
                noise.scatter_(1, top, -1.0)  # retrieved items are never drawn again
                cands = torch.cat([top, noise.topk(self.random, dim=1).indices], 1)
            else:
                cands = top
            if getattr(self.ranker, "scores_candidates", False):  # an MTL base (mtf/mtl_ranker.py): reads ids
                probs, play = self.ranker.candidate_outputs(obs.user, items, fb, mask, cands)
            else:
                c_enc = self.item_enc[cands + 1]
                probs = self.ranker.probabilities(self.ranker.score(vectors, c_enc))
                play = self.ranker.play_logits(self.ranker.play_vectors(r_state), c_enc)
            preds = fusion_targets(probs, play, self.ranker.play_edges)
            self._request = Request(state=state, candidates=cands, preds=preds, user=obs.user, depth=depth)
        return self._request

    def observation(self) -> Request:
        """The current request: what :func:`recrl_cli.sim.rollout.play` hands the policy (its env protocol)."""
        return self.request()

    @torch.no_grad()
    def rank(self, action: Tensor, request: Request | None = None) -> Tensor:
        """Slate positions [B, K] in the candidates: the top K by the fused score of ``action`` [B, A]."""
        req = request or self.request()
        powers, biases = self.action_map(action.to(self.device))
        return fused_log_scores(req.preds, powers, biases).topk(self.slate, dim=1).indices

    @torch.no_grad()
    def expected_reward(self, request: Request | None = None) -> Tensor:
        """The simulator's expected reward (watch + rest, :func:`expected_item_rewards`) of every candidate of the
        current request, [B, C]: its own response probabilities and play time, without the correlation penalty
        (what the per-user best slate ranks by; the fusion counterpart of
        :meth:`WholeSessionEnv.expected_reward`). Valid until the next :meth:`step`."""
        req = request or self.request()
        probs, play_logits = self.sim.predict(req.candidates)
        assert play_logits is not None  # __init__ checked the head
        return expected_item_rewards(probs, play_logits, self.sim.model.play_edges, self.weights)

    @torch.no_grad()
    def step(self, action: Tensor) -> FusionStep:
        """Serve the fused slate of ``action`` [B, A] (normalised) and simulate the users' answers."""
        if action.shape != (self.batch, self.action_dim):
            raise ValueError(
                f"action must have shape ({self.batch}, {self.action_dim}), got {tuple(action.shape)}"
            )
        return self.serve(self.rank(action))

    @torch.no_grad()
    def serve(self, slate: Tensor) -> FusionStep:
        """Serve ``slate`` [B, K] (distinct positions in the current request's candidates) and simulate the users'
        answers; :meth:`step` serves the fused slate of an action, calibration policies a slate of their own."""
        if slate.shape != (self.batch, self.slate):
            raise ValueError(f"slate must have shape ({self.batch}, {self.slate}), got {tuple(slate.shape)}")
        req = self.request()
        slate = slate.to(self.device)
        items = req.candidates.gather(1, slate)
        out = self.sim.step(items)
        watch, rest = item_rewards(out.responses, out.play_seconds, self.weights)
        reward = torch.stack([watch.sum(1), rest.sum(1)], -1)
        self._request = None
        return FusionStep(request=req, slate=slate, items=items, responses=out.responses, play=out.play_seconds,
                          reward=reward, done=out.done)  # fmt: skip
