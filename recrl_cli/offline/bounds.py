"""UnifiedRL's exploration-box terms (unifiedrl_hrlrec.md §A4): the actor's bound penalty d (Eq. 5) and the
critic target's out-of-bounds decay φ (v6), plus the earlier version's additive target penalty.

Shapes: n rows, A action dims. Every function takes the action x, the baseline action mu_bp and the box offsets
lower / upper, all [n, A] in the normalised action space; the box of a row is [mu_bp + lower, mu_bp + upper]
and its width is w = upper − lower (per dimension, > 0).

Conventions (documented choices where the source is silent):

* The box is closed: a point exactly on its edge counts as inside (Eq. 5 writes the inside as the open
  interval and the outside with strict inequalities, leaving the edge itself unassigned).
* Vector actions aggregate by the **sum over dimensions** (the source gives Eq. 5 per dimension only).
"""

from __future__ import annotations

import torch
from torch import Tensor


def box_excess(x: Tensor, mu_bp: Tensor, lower: Tensor, upper: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(above, below, width), each [n, A]: how far x lies above mu_bp + upper and below mu_bp + lower (0 inside,
    never negative), and the box width upper − lower."""
    above = (x - (mu_bp + upper)).clamp_min(0.0)
    below = ((mu_bp + lower) - x).clamp_min(0.0)
    return above, below, upper - lower


def bound_penalty(x: Tensor, mu_bp: Tensor, lower: Tensor, upper: Tensor, beta: float,
                  continuous: bool = False) -> Tensor:  # fmt: skip
    """d(x, μ_bp, lower, upper) of Eq. 5, summed over dims: [n, A] x4 -> [n].

    Per dim: 0 inside the box; exp((x − (μ_bp + upper)) / (β·w)) above it; exp(((μ_bp + lower) − x) / (β·w))
    below it. As written, d jumps from 0 to e^0 = 1 at the edge (its gradient outside is d / (β·w) and 0
    inside). ``continuous=True`` uses exp(·) − 1 instead, which is 0 at the edge (the documented variant).
    """
    above, below, width = box_excess(x, mu_bp, lower, upper)
    outside = (above > 0) | (below > 0)
    # above and below are never both > 0, so their sum is the one-sided distance outside the box.
    value = torch.exp((above + below) / (beta * width))
    value = value - 1.0 if continuous else torch.where(outside, value, torch.zeros_like(value))
    return value.sum(-1)


def target_decay(x: Tensor, mu_bp: Tensor, lower: Tensor, upper: Tensor, zeta: float) -> Tensor:
    """The v6 critic-target factor φ (the [PROPOSAL] form): [n, A] x4 -> [n] in (0, 1].

    φ = exp(−Σ_d excess_d / (ζ·w_d)), excess_d the distance of x_d outside the box (0 inside), ζ a temperature.
    φ = 1 inside the box and decays exponentially with the distance outside. With ζ = β it is the reciprocal
    of the product of the Eq. 5 per-dim penalties of the dims that are outside, which ties the two scales.
    """
    above, below, width = box_excess(x, mu_bp, lower, upper)
    return torch.exp(-((above + below) / (zeta * width)).sum(-1))
