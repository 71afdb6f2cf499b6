"""Logged lists from prepared KuaiRand: offline training and offline evaluation (unifiedrl_hrlrec.md B3, B7).

The released LRA cuts a user's impressions into lists of exactly T consecutive positions and drops shorter
remainders (its reader's truncation bug, B5, is not ported). KuaiRand's requests are short (about 2 videos), so a
logged list is T consecutive rows of one user inside one split: train lists for offline training, lists of the
held-out val + test rows (contiguous per user, after the train rows) for offline evaluation. A list's state is the
user's history before its first row, exactly what the simulator's fresh users start from.

Offline evaluation (logged lists have no counterfactual outcome, so it scores the policy against the log):
``item_auc`` is the AUC of the item recommender's score ⟨μ^H(s_t), e_{d_t}⟩ for clicked against non-clicked
logged positions; ``channel_acc`` is the share of clicked positions where the selector's arg-max channel is the
logged one.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from recrl_cli.data.kuairand_tensors import RowTable, gather_history
from recrl_cli.evaluation.metrics import auc
from recrl_cli.hrlrec.agent import HRLAgent, ListBatch
from recrl_cli.hrlrec.networks import shift_right
from recrl_cli.hrlrec.online import ListScorer
from recrl_cli.sim.environment import Observation


def list_starts(table: RowTable, rows: torch.Tensor, length: int) -> torch.Tensor:
    """First rows [L] of the logged lists inside ``rows`` [S] (ascending row indices): runs of ``length``
    consecutive rows of one user, from each user's first row in ``rows``; shorter remainders dropped."""
    if len(rows) < length:
        return rows[:0]
    user = table.user[rows]
    new = torch.ones_like(user, dtype=torch.bool)
    new[1:] = (user[1:] != user[:-1]) | (rows[1:] != rows[:-1] + 1)  # a new user or a gap starts a run
    run = torch.cumsum(new.long(), 0) - 1
    first = torch.nonzero(new).squeeze(1)
    pos = torch.arange(len(rows), device=rows.device) - first[run]
    size = torch.bincount(run)
    return rows[(pos % length == 0) & (pos + length <= size[run])]


@dataclass(frozen=True)
class LoggedLists:
    """Logged lists of one split: ``starts`` [L] first rows, gathered into :class:`ListBatch` es on demand."""

    table: RowTable
    starts: torch.Tensor
    length: int
    history_length: int
    same_request: bool

    def __len__(self) -> int:
        return len(self.starts)

    def batch(self, idx: torch.Tensor, scorer: ListScorer) -> ListBatch:
        """Lists ``idx`` [B] (indices into ``starts``) with their logged clicks, play time and rewards."""
        t = self.table
        start = self.starts[idx]
        rows = start[:, None] + torch.arange(self.length, device=start.device)  # [B, T]
        hist = gather_history(t, start, self.history_length, same_request=self.same_request)
        obs = Observation(user=t.user[start], items=hist.items, feedback=hist.feedback, mask=hist.mask)
        items = t.item[rows] - 1
        clicks = t.labels[rows, 0].float()
        play = torch.nan_to_num(t.play_seconds[rows], nan=0.0)
        rewards, _ = scorer.score(obs, items, clicks, play)
        return ListBatch(obs=obs, items=items, channels=scorer.channels.channel_of[items], r_low=rewards.low,
                         r_high=rewards.high, click=clicks)  # fmt: skip


@torch.no_grad()
def offline_scores(agent: HRLAgent, batch: ListBatch) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(item scores [B, T] = ⟨μ^H_t, e_{d_t}⟩, selector's arg-max channel [B, T] or None for a flat agent)."""
    agent.nets.eval()
    state = agent.nets["user"](batch.obs, agent.nets["user"].item_table())
    ei = agent.item_emb[batch.items]
    ec = agent.chan_emb[batch.channels] if agent.hierarchical else torch.zeros_like(ei)
    pi, pc = shift_right(ei), shift_right(ec)
    mu = agent.nets["high_actor"](state, pi, pc, ec if agent.hierarchical else None)
    scores = (mu * ei).sum(-1)
    if not agent.hierarchical:
        return scores, None
    return scores, (agent.nets["low_actor"](state, pi, pc) @ agent.chan_emb.T).argmax(-1)


def offline_evaluate(agent: HRLAgent, lists: LoggedLists, scorer: ListScorer, batch_size: int = 256
                     ) -> dict[str, float]:  # fmt: skip
    """``item_auc`` and (hierarchical agents) ``channel_acc`` over every list of ``lists``; {} if empty."""
    if len(lists) == 0:
        return {}
    scores, labels, hits, clicked = [], [], [], []
    for s in range(0, len(lists), batch_size):
        b = lists.batch(torch.arange(s, min(s + batch_size, len(lists)), device=lists.starts.device), scorer)
        score, chan = offline_scores(agent, b)
        scores.append(score.flatten())
        labels.append(b.click.flatten())
        if chan is not None:
            hits.append(((chan == b.channels).float() * b.click).sum())
            clicked.append(b.click.sum())
    out = {"item_auc": auc(torch.cat(scores), torch.cat(labels))}
    if hits:
        out["channel_acc"] = float(torch.stack(hits).sum() / torch.stack(clicked).sum().clamp(min=1.0))
    return out
