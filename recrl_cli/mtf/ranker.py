"""The ranker a fusion run fuses when no ``--ranker`` is given: the simulator without its users' own taste.

A fusion policy can only win what the ranker it fuses gets wrong user by user. With the simulator as its own
ranker the fused targets are the true expected targets, whose reward is one linear mix of them for every user,
so every fusion is near the best (``benchmarks/KUAISIM_NOTES.md``, "Fusion headroom by ranker": the best fusion
per request +0.2 % over the best fixed one). :func:`taste_free_view` is a ranker with realistic, per-user errors
at no training cost: the simulator's copy in which every user's taste row p_u is the mean row, so it keeps the
history transformer and the item side and loses the user × item part that the taste embedding learned from
the user id (what an MTL ranker without a user id embedding, or one that has not seen the user, misses).
"""

from __future__ import annotations

import copy

import torch

from recrl_cli.sim.response_model import UserResponseModel

TASTE_FREE = "taste-free"  # --ranker taste-free: this view (the default when --ranker is not given)
SELF = "self"  # --ranker self: the simulator ranks for itself (the oracle ranker; no room for fusion)
BUILT_IN = ("", TASTE_FREE, SELF)  # --ranker values that name no saved model
TASTE_FREE_NAME = "the simulator's taste-free view"  # how tables name it


def taste_free_view(model: UserResponseModel) -> UserResponseModel:
    """A frozen copy of ``model`` whose user taste table [U + 1, t] holds its mean row in every row (the user
    state's taste part and the taste vectors T_b = W p + c then are the same for every user). A model without
    user taste (``no_user_taste``) has nothing user-specific to remove: ValueError."""
    if not model.taste_dim:
        raise ValueError(
            "the simulator has no user taste embedding (no_user_taste): pass --ranker <another simulator run>"
        )
    view = copy.deepcopy(model).eval()
    with torch.no_grad():
        rows = view.user_taste.weight
        rows.copy_(rows.mean(0, keepdim=True).expand_as(rows))
    # Where it came from, so that the fusion env can reuse the simulator's user-state pass (the states differ only
    # in the taste columns). object.__setattr__: as a module attribute it would become a registered submodule.
    object.__setattr__(view, "taste_free_of", model)
    return view.requires_grad_(False)


def built_in_ranker(model: UserResponseModel, ref: str) -> tuple[UserResponseModel, str]:
    """(ranker, how tables name it) for a ``--ranker`` of :data:`BUILT_IN`: ``self`` = ``model`` itself;
    ``taste-free`` or empty = :func:`taste_free_view`, or ``model`` itself when it has no user taste (there is
    nothing user-specific to remove; the caller's notice says so)."""
    if ref == SELF or (not ref and not model.taste_dim):
        return model, "the simulator itself"
    return taste_free_view(model), TASTE_FREE_NAME
