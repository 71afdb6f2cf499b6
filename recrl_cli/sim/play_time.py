"""Play time: recrl's addition to KuaiSim's response model (KuaiSim predicts 7 Bernoulli behaviours only).

UnifiedRL's reward needs watch time and valid consumption (play > 10 s), HRL-Rec's needs dwell, so the
simulator also predicts how long a user plays an item *given a click* (KuaiRand logs play 0 without one):
a categorical over M + 1 bins with edges e_1 < ... < e_M seconds, bins [0, e_1), [e_1, e_2), ..., [e_M, ∞).

Sampling keeps the simulated signals consistent with each other:

- no click -> play 0;
- a click -> a bin from the head; when 18 s is an edge, the bin is drawn from the bins at or above 18 s if the
  sampled ``long_view`` is 1 and from those below 18 s otherwise (KuaiRand's long_view is play >= 18 s, or a
  full play of a shorter video, which this ignores), falling back to every bin when that side has no mass;
- seconds uniform inside the bin; the open last bin [e_M, ∞) draws e_M·(1 + Exp(1)) (mean 2·e_M).

Shapes: [...] any leading shape, M + 1 bins.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from recrl_cli.data.prepare.kuairand_spec import BEHAVIOURS

LONG_VIEW_SECONDS = 18.0
# Indices in the prepared data's BEHAVIOURS (click, long_view, like, comment, forward, follow, hate); read from it,
# not written by hand: a hard-coded 5 (is_follow) once made nearly every simulated click play under 18 s.
CLICK, LONG_VIEW = BEHAVIOURS.index("is_click"), BEHAVIOURS.index("long_view")


def play_bins(seconds: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
    """Bin index of each play time: seconds [...] -> LongTensor [...] in [0, M]."""
    return torch.bucketize(seconds, edges, right=True)


def bin_bounds(edges: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(lower [M + 1], upper [M + 1]) seconds of each bin; the last upper is 2·e_M (its mean, see sampling)."""
    zero = edges.new_zeros(1)
    lower = torch.cat([zero, edges])
    upper = torch.cat([edges, edges[-1:] * 2.0])
    return lower, upper


def bin_means(edges: torch.Tensor) -> torch.Tensor:
    """Mean seconds [M + 1] of a draw in each bin under the sampling rule: the middle of a closed bin; the open
    last bin's e_M·(1 + Exp(1)) has mean 2·e_M (not the middle of [e_M, 2·e_M])."""
    lower, upper = bin_bounds(edges)
    return torch.cat([(lower[:-1] + upper[:-1]) / 2, 2.0 * lower[-1:]])


def expected_seconds(logits: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
    """E[play | click] under the sampling rule: logits [..., M + 1] -> [...] seconds."""
    return (F.softmax(logits, -1) * bin_means(edges)).sum(-1)


def play_time_loss(
    logits: torch.Tensor, seconds: torch.Tensor, clicked: torch.Tensor, edges: torch.Tensor
) -> torch.Tensor:
    """Mean cross-entropy over the clicked rows with a known play time: logits [N, M + 1], seconds [N]
    (NaN = unknown), clicked [N] bool, edges [M] -> 0-dim (an exact 0 that keeps the graph when no row counts)."""
    keep = clicked & ~torch.isnan(seconds)
    if not bool(keep.any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits[keep], play_bins(seconds[keep], edges))


def sample_play_seconds(
    logits: torch.Tensor,
    responses: torch.Tensor,
    edges: torch.Tensor,
    generator: torch.Generator,
) -> torch.Tensor:
    """Play seconds of each shown item: logits [B, K, M + 1], responses [B, K, 7] (0/1) -> [B, K] seconds.

    Three uniform draws per item are taken from ``generator`` whatever the responses, so the stream of a
    seeded environment advances identically.
    """
    probs = F.softmax(logits, -1)
    split = int(torch.searchsorted(edges, edges.new_tensor(LONG_VIEW_SECONDS)))
    if split < len(edges) and float(edges[split]) == LONG_VIEW_SECONDS:
        high = torch.arange(probs.shape[-1], device=probs.device) >= split + 1  # bins starting at >= 18 s
        want_high = responses[..., LONG_VIEW, None] > 0
        side = torch.where(want_high, high, ~high)
        masked = probs * side
        mass = masked.sum(-1, keepdim=True)
        probs = torch.where(mass > 0, masked / mass.clamp(min=1e-30), probs)
    u_bin, u_within, u_tail = torch.rand((3, *probs.shape[:-1]), generator=generator, device=probs.device)
    cdf = probs.cumsum(-1)
    cdf[..., -1] = 1.0  # float round-off must not leave a draw above the last bin
    b = torch.searchsorted(cdf, u_bin[..., None]).squeeze(-1).clamp(max=probs.shape[-1] - 1)
    lower, upper = bin_bounds(edges)
    lo, hi = lower[b], upper[b]
    last = b == probs.shape[-1] - 1
    seconds = torch.where(last, lo * (1.0 - torch.log1p(-u_tail)), lo + (hi - lo) * u_within)
    return seconds * (responses[..., CLICK] > 0)


VALID_SECONDS = 10.0  # UnifiedRL's "valid consumption": a play longer than 10 s


def prob_at_least(logits: torch.Tensor, edges: torch.Tensor, seconds: float) -> torch.Tensor:
    """P(play >= ``seconds`` | click) counting the bins that start at or above it: [..., M + 1] -> [...]."""
    lower, _ = bin_bounds(edges)
    return (F.softmax(logits, -1) * (lower >= seconds)).sum(-1)


def click_play_expectations(logits: torch.Tensor, edges: torch.Tensor, behaviour_probs: torch.Tensor,
                            seconds: float = VALID_SECONDS) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """(E[play | click], P(play > ``seconds`` | click)) under :func:`sample_play_seconds`'s rule when the 7
    responses are drawn independently with ``behaviour_probs`` [..., 7]: logits [..., M + 1] -> ([...] seconds,
    [...]). Within a bin the seconds are uniform, in the open last bin e_M·(1 + Exp(1)); with 18 s an edge the
    bin is drawn from the ≥ 18 s side with the probability of the response the sampler reads there
    (``behaviour_probs[..., LONG_VIEW]``, the same index), else from the other side."""
    long_view = behaviour_probs[..., LONG_VIEW]
    probs = F.softmax(logits, -1)
    lower, upper = bin_bounds(edges)
    middle = bin_means(edges)
    inside = ((upper - seconds) / (upper - lower)).clamp(0.0, 1.0)  # uniform inside [lower, upper)
    tail = torch.exp(-(seconds / lower[-1:].clamp(min=1e-12) - 1.0).clamp(min=0.0))  # e_M·(1 + Exp) > seconds
    above = torch.cat([inside[:-1], tail])

    def moments(p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return (p * middle).sum(-1), (p * above).sum(-1)

    split = int(torch.searchsorted(edges, edges.new_tensor(LONG_VIEW_SECONDS)))
    if not (split < len(edges) and float(edges[split]) == LONG_VIEW_SECONDS):
        return moments(probs)
    high = torch.arange(probs.shape[-1], device=probs.device) >= split + 1
    sides = []
    for side in (high, ~high):
        masked = probs * side
        mass = masked.sum(-1, keepdim=True)
        sides.append(moments(torch.where(mass > 0, masked / mass.clamp(min=1e-30), probs)))
    (mean_hi, above_hi), (mean_lo, above_lo) = sides
    return (long_view * mean_hi + (1.0 - long_view) * mean_lo,
            long_view * above_hi + (1.0 - long_view) * above_lo)  # fmt: skip


def play_metrics(
    logits: torch.Tensor,
    click_prob: torch.Tensor,
    seconds: torch.Tensor,
    clicked: torch.Tensor,
    edges: torch.Tensor,
) -> dict[str, float]:
    """Validation figures of the head on N rows: logits [N, M + 1], click_prob [N] (the model's P(click)),
    seconds [N] logged (NaN = blank), clicked [N] bool.

    ``play/ce``: cross-entropy of the logged bin over clicked rows; ``play/mae_seconds``: |E[play | click] −
    play| over them; ``valid_play/auc``: AUC of P(click)·P(play >= 10 s | click) against play >= 10 s over
    every row with a known play time (NaN where undefined).
    """
    from recrl_cli.evaluation.metrics import auc

    known = ~torch.isnan(seconds)
    keep = known & clicked
    out = {"play/ce": float("nan"), "play/mae_seconds": float("nan"), "valid_play/auc": float("nan")}
    if bool(keep.any()):
        out["play/ce"] = float(F.cross_entropy(logits[keep], play_bins(seconds[keep], edges)))
        out["play/mae_seconds"] = float((expected_seconds(logits[keep], edges) - seconds[keep]).abs().mean())
    if bool(known.any()):
        score = click_prob[known] * prob_at_least(logits[known], edges, VALID_SECONDS)
        out["valid_play/auc"] = auc(score, (seconds[known] >= VALID_SECONDS).float())
    return out
