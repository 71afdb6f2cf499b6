"""RMTL's session MDP (rmtl.md §2.1) as a tensorised replay buffer over the rows of one split.

One transition per row i of the split (rows of a session are contiguous and in time order, see
:class:`recrl_cli.data.tensors.SplitTensors`):

* state s_i = the row's feature ids [F] (plus two session-context ids when the context is on, see
  :func:`critic_states`);
* action a_i = [T] per-task probabilities (the frozen pretrained actor's, or uniform random ones);
* reward r_{i,k} = y_k·log(clip(a_k)) + (1−y_k)·log(clip(1−a_k)), clip to [1e-4, 1]: minus the BCE (§2.1);
* next state = row i+1 when it belongs to the same session, else the row itself with done = 1 (§2.1, ``env.py``).

Everything is a device tensor indexed by row number, so a TD batch is a handful of gathers and no Python per
row. The reference rebuilt this with a pandas groupby and a pure-Python env loop (§7.1).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from recrl_cli.errors import DataError

REWARD_CLIP = 1e-4  # log-probabilities are clipped here, as in the reference (env.py L31-32)
CONTEXT_POSITIONS = 32  # session positions 0..30 get their own context id, 31 stands for "31 or later"
ZSCORE_EPS = 1e-3  # the reference's state_normalize: (x - mean) / (std + 1e-3)


def log_likelihood_reward(actions: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-task reward = minus the clipped BCE of probability ``actions`` [N, T] for 0/1 ``labels`` [N, T]."""
    log_p = torch.log(actions.clamp(REWARD_CLIP, 1.0))
    log_q = torch.log((1.0 - actions).clamp(REWARD_CLIP, 1.0))
    return labels * log_p + (1.0 - labels) * log_q


def next_row_index(session_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Next transition of every row: session_ids [N] → (next_index [N] long, done [N] float 0/1).

    The last row of a session points at itself and has done = 1. Raises DataError if a session's rows are not
    contiguous (the MDP would silently link rows of different visits).
    """
    n = session_ids.shape[0]
    same_next = torch.zeros(n, dtype=torch.bool, device=session_ids.device)
    if n > 1:
        same_next[:-1] = session_ids[1:] == session_ids[:-1]
    runs = n - int(same_next.sum())  # number of contiguous blocks
    if n and runs != int(torch.unique(session_ids).numel()):
        raise DataError("rows of a session are not contiguous in the split; run `recrl prepare` again")
    rows = torch.arange(n, device=session_ids.device)
    return torch.where(same_next, rows + 1, rows), (~same_next).float()


def previous_labels(labels: torch.Tensor, session_ids: torch.Tensor) -> torch.Tensor:
    """Context id of what happened at the previous event of the session: [N, T] labels, [N] sessions → [N] long.

    0 at the first row of a session, else 1 + Σ_k y_{i−1,k}·2^k (the previous row's label pattern, 2^T values).
    """
    n, num_tasks = labels.shape
    powers = 2 ** torch.arange(num_tasks, device=labels.device)
    pattern = 1 + (labels.long() * powers).sum(1)  # [N]
    out = torch.zeros(n, dtype=torch.long, device=labels.device)
    if n > 1:
        continues = session_ids[1:] == session_ids[:-1]  # row i+1 is in row i's session
        out[1:] = torch.where(continues, pattern[:-1], 0)
    return out


def critic_cardinalities(
    cardinalities: Sequence[int], num_tasks: int, context: bool, history_length: int = 0
) -> list[int]:
    """Embedding sizes of the critic's state fields: the features', plus the two context fields if ``context``,
    plus the two history-summary fields (each 0..H) if ``context`` and the data carry a history of length H."""
    extra = [CONTEXT_POSITIONS, 1 + 2**num_tasks] if context else []
    if context and history_length:
        extra += [history_length + 1, history_length + 1]
    return [*cardinalities, *extra]


def critic_states(
    features: torch.Tensor,
    labels: torch.Tensor,
    session_ids: torch.Tensor,
    positions: torch.Tensor,
    context: bool,
    num_fields: int | None = None,
) -> torch.Tensor:
    """State ids the critics read for every row: [N, F] or, with ``context``, [N, F + 2] (+ 2 with a history).

    ``features`` [N, F + 2H]: the F fields, then the session history's H item ids and H label codes
    (``data/tensors.py``; H = 0 without one); ``num_fields`` = F (default: every column is a field).
    The reference state is the current item's features only (rmtl.md §2.1). The optional session context adds
    two fields: the row's position in the session (clipped to CONTEXT_POSITIONS − 1; Q sums rewards over the rest
    of the session, so where the row sits matters) and the previous event's label pattern
    (:func:`previous_labels`); with a history, two more: how many earlier rows the visitor has (0..H) and on how
    many of them a cart was already known (label code >= 2) at the row's time. The history columns are built as
    of the row's time (no leakage); the previous-label field is the reference-era context and uses the previous
    row's final labels.
    """
    f = features.shape[1] if num_fields is None else num_fields
    base = features[:, :f]
    if not context:
        return base
    position = positions.clamp(0, CONTEXT_POSITIONS - 1)
    fields = [base, position.unsqueeze(1), previous_labels(labels, session_ids).unsqueeze(1)]
    h = (features.shape[1] - f) // 2
    if h:
        codes = features[:, f + h : f + 2 * h]
        fields += [(codes > 0).sum(1, keepdim=True), (codes >= 2).sum(1, keepdim=True)]
    return torch.cat(fields, dim=1)


def normalize_state_ids(ids: torch.Tensor, cardinalities: Sequence[int], num_fields: int) -> torch.Tensor:
    """Faithful bug 3 (BC agent L38-47): z-score the first ``num_fields`` id columns over the batch and truncate
    toward zero, as ``torch.LongTensor`` did in the reference. ids [B, F'] → [B, F'].

    The result is clamped into each field's range (the reference would crash on a negative id; with skewed id
    distributions nearly everything lands on 0..5 anyway, rmtl.md §2.4).
    """
    x = ids[:, :num_fields].double()
    z = (x - x.mean(0)) / (x.std(0, unbiased=False) + ZSCORE_EPS)
    upper = torch.tensor(list(cardinalities)[:num_fields], device=ids.device) - 1
    out = ids.clone()
    out[:, :num_fields] = torch.minimum(z.trunc().long().clamp_min(0), upper)
    return out


@dataclass(frozen=True)
class SessionMDP:
    """The replay buffer: one transition per row of a split. N rows, T tasks.

    Attributes:
        next_index: [N] long, row of the next state (the row itself when done).
        done: [N] float, 1 at the last row of a session.
        actions: [N, T] actions stored in the buffer (what Q(s, a) is fitted at).
        rewards: [N, T] per-task rewards of those transitions.
        policy_actions: [N, T] the frozen actor's probabilities; a' = policy_actions[next_index] in the target.
    """

    next_index: torch.Tensor
    done: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    policy_actions: torch.Tensor

    @property
    def num_transitions(self) -> int:
        return int(self.next_index.shape[0])


def build_session_mdp(
    session_ids: torch.Tensor,
    labels: torch.Tensor,
    actor_probs: torch.Tensor,
    *,
    stored_actions: torch.Tensor | None = None,
    affine_mismatch: bool = False,
) -> SessionMDP:
    """Build the buffer from a split's session_ids [N], labels [N, T] and the actor's probabilities [N, T].

    Args:
        stored_actions: [N, T] actions to store instead of the actor's (the ``random_actions`` switch).
        affine_mismatch: faithful bug 4 (ActionNormalizer, §2.1): the reward is computed at clip(0.5a + 0.5)
            while a itself is stored.
    """
    if labels.shape != actor_probs.shape or labels.shape[0] != session_ids.shape[0]:
        raise DataError(
            f"MDP inputs disagree: labels {tuple(labels.shape)}, actions {tuple(actor_probs.shape)}"
        )
    next_index, done = next_row_index(session_ids)
    actions = actor_probs if stored_actions is None else stored_actions
    reward_at = (0.5 * actions + 0.5).clamp(0.0, 1.0) if affine_mismatch else actions
    return SessionMDP(
        next_index=next_index,
        done=done,
        actions=actions,
        rewards=log_likelihood_reward(reward_at, labels),
        policy_actions=actor_probs,
    )
