"""Configs of the KuaiSim-style user response model (``recrl train simulator``) and of the whole-session env.

Defaults are the *fixed* behaviour. Each faithful switch reproduces one documented quirk of KuaiSim
(``research/hac_kuaisim.md`` §8, item numbers in the help strings); ``faithful=True`` turns every switch of
its section on (see :func:`response_switches` and :func:`env_switches`). This module is the one place the
switches are documented:

==========================  ======  =============================================================================
switch                      §8 #    effect when on (faithful)
==========================  ======  =============================================================================
double_sigmoid              1       loss = BCEWithLogits(σ(z)); the env samples σ(σ(z)) ∈ (0.5, 0.731)
scrambled_feedback          5       history labels ``cat(dim=-1).view(B, H, 7)`` instead of ``stack(dim=-1)``
unmasked_padding            16      left-padding slots are attended to (fixed: masked out as attention keys)
pos_neg_weights             §3.4    negatives of behaviour b weigh N_pos/N_neg in the loss (fixed: plain BCE)
no_behaviour_bias           –       recrl adds a learned per-behaviour logit bias; faithful drops it (KuaiSim's
                                    score is the bare mean_d(A_b ⊙ e_i), bounded near ±1 at init)
per_row_window              §3.2    every row re-encodes its own copied H-row window, read at the last position
                                    (fixed: each user's sequence is encoded once with a causal mask, every
                                    position's state from one pass; ``recrl_cli.sim.sequence``)
bounded_logits              §3.2    z = mean_d(A_b ⊙ e_i) + bias_b, |z| ≲ 1 (fixed: a learned per-behaviour
                                    logit scale, bias_b initialised at the train split's log-odds)
no_user_taste               –       no user taste embedding (fixed: p_u ∈ R^t per user id, scored against an
                                    item taste vector from the item's id and tag rows, as matrix factorisation)
dropout_in_simulation       9       the env runs the response model in train mode (dropout on)
correlation_mean_over_dim   12      item-correlation penalty p − ρ·(1/(K·d))Σ_j cos (fixed: p·(1 − ρ·(1/K)Σ_j cos),
                                    a factor, so the penalty scales rare behaviours instead of zeroing them)
==========================  ======  =============================================================================
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from recrl_cli.config.fields import param
from recrl_cli.errors import ConfigError

RESPONSE_SWITCHES = ("double_sigmoid", "scrambled_feedback", "unmasked_padding", "pos_neg_weights",
                     "no_behaviour_bias", "per_row_window", "bounded_logits", "no_user_taste")  # fmt: skip
# What an export written before these existed was: KuaiSim's per-row window and bounded logits, no taste.
LEGACY_SWITCHES = {"per_row_window": True, "bounded_logits": True, "no_user_taste": True}
ENV_SWITCHES = ("dropout_in_simulation", "correlation_mean_over_dim")
START_SPLITS = ("all", "train", "val", "test")


def _check_positive(section: str, obj: object, names: tuple[str, ...]) -> None:
    for name in names:
        value = getattr(obj, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{section}.{name} must be a positive integer, got {value!r}")


@dataclass(frozen=True)
class SimulatorConfig:
    """The ``model`` section of ``recrl train simulator``: KuaiSim's URM (hac_kuaisim.md §3.2) and its loss."""

    user_latent: int = param(32, help="Width of each user id/feature embedding row before the encoder.")
    item_latent: int = param(32, help="Width of each item id/feature/tag embedding row before the encoder.")
    enc_dim: int = param(64, help="d: item/user encoding width; transformer tokens are 2d, the state 3d.")
    n_layers: int = param(2, help="Transformer encoder layers over the history.")
    n_heads: int = param(4, help="Attention heads (must divide 2·enc_dim).")
    ff_dim: int = param(64, help="Transformer feed-forward width.")
    dropout: float = param(0.1, help="Dropout in encoders, transformer and scorer, in [0, 1).")
    state_hidden: int = param(128, help="Hidden width of the scorer DNN(3d → hidden → 7·d).")
    history_length: int = param(100, help="H: previous rows of the user fed as history (left-padded).")
    same_request: bool = param(
        True,
        help="History includes earlier rows of the same request (KuaiSim's reader); off = earlier requests only.",
    )
    l2_coef: float = param(
        0.01, help="λ of KuaiSim's reg: Σ mean(θ²) over non-id tensors + batch id embeddings."
    )
    # -- user taste (recrl's addition: the user x item part KuaiSim's URM does not learn in a short training) --
    taste_dim: int = param(16, help="t: width of the user taste embedding and the item taste vectors.")
    taste_lr_scale: float = param(
        10.0, help="Learning rate of the taste tables = train.lr x this (sparse rows need larger steps)."
    )
    taste_l2: float = param(
        0.01, help="L2 on the batch's taste rows (user and item), per row (MF's usual reg)."
    )
    # -- the world check run at the end of training (recrl_cli.sim.check) --------------------------------------
    check_steps: int = param(
        100, help="World check after training: env steps per headroom policy (0 = no check)."
    )
    check_truth: str = param(
        "", help="Raw folder of the synthetic set whose planted truth the check compares with (empty: the "
        "raw/kuairand folder beside the prepared one, when it holds the matching ground truth).",
    )  # fmt: skip
    # -- play time (recrl's addition: KuaiSim has no play-time output; UnifiedRL and HRL-Rec need watch time) ---
    play_time_edges: tuple[float, ...] = param(
        (1.0, 3.0, 7.0, 10.0, 18.0, 30.0, 60.0, 120.0, 300.0),
        help="Play-time head: ascending bin edges in seconds (bins [0,e1), ..., [eM, inf)); empty = no head.",
    )
    play_time_coef: float = param(1.0, help="Weight of the play-time head's cross-entropy in the loss.")
    # -- faithful switches (False = fixed) ---------------------------------------------------------------------
    faithful: bool = param(False, help="Preset: every response-model switch below on (KuaiSim as published).")
    double_sigmoid: bool = param(False, help="§8 #1: loss BCEWithLogits(σ(z)); simulate from σ(σ(z)).")
    scrambled_feedback: bool = param(False, help="§8 #5: feedback cat(-1).view(B,H,7), not stack(-1).")
    unmasked_padding: bool = param(False, help="§8 #16: attend to left-padding slots (fixed: masked).")
    pos_neg_weights: bool = param(False, help="§3.4: weigh negatives by N_pos/N_neg (fixed: plain BCE).")
    no_behaviour_bias: bool = param(False, help="KuaiSim has no per-behaviour logit bias (recrl adds one).")
    per_row_window: bool = param(
        False, help="§3.2: re-encode a copied H-row window per row (fixed: one causal pass)."
    )
    bounded_logits: bool = param(
        False, help="§3.2: bare mean_d score (fixed: logit scale + rate-initialised bias)."
    )
    no_user_taste: bool = param(False, help="KuaiSim has no user taste embedding (recrl adds one).")

    def __post_init__(self) -> None:
        _check_positive("model", self, ("user_latent", "item_latent", "enc_dim", "n_layers", "n_heads",
                                        "ff_dim", "state_hidden", "history_length", "taste_dim"))  # fmt: skip
        if (
            isinstance(self.check_steps, bool)
            or not isinstance(self.check_steps, int)
            or self.check_steps < 0
        ):
            raise ConfigError(f"model.check_steps must be a non-negative integer, got {self.check_steps!r}")
        if not self.taste_lr_scale > 0.0 or not self.taste_l2 >= 0.0:
            raise ConfigError(f"model.taste_lr_scale must be > 0 and model.taste_l2 >= 0, got "
                              f"{self.taste_lr_scale!r} and {self.taste_l2!r}")  # fmt: skip
        if (2 * self.enc_dim) % self.n_heads:
            raise ConfigError(f"model.n_heads ({self.n_heads}) must divide 2·enc_dim ({2 * self.enc_dim})")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"model.dropout must be in [0, 1), got {self.dropout!r}")
        if not self.l2_coef >= 0.0:
            raise ConfigError(f"model.l2_coef must be >= 0, got {self.l2_coef!r}")
        edges = tuple(float(e) for e in self.play_time_edges)
        if any(e <= 0 for e in edges) or any(b <= a for a, b in itertools.pairwise(edges)):
            raise ConfigError(
                f"model.play_time_edges must be positive and ascending, got {self.play_time_edges!r}"
            )
        object.__setattr__(self, "play_time_edges", edges)
        if not self.same_request and not (self.per_row_window or self.faithful):
            raise ConfigError("model.same_request=false needs model.per_row_window=true: the causal pass over a "
                              "user's sequence always sees earlier rows of the same request")  # fmt: skip
        if not self.play_time_coef >= 0.0:
            raise ConfigError(f"model.play_time_coef must be >= 0, got {self.play_time_coef!r}")


@dataclass(frozen=True)
class EnvConfig:
    """The whole-session environment (hac_kuaisim.md §4; defaults = KuaiSim's whole-session scripts, §4.4)."""

    batch_users: int = param(32, help="B: users simulated in parallel (leavers are replaced in place).")
    slate_size: int = param(6, help="K: items recommended per step.")
    initial_temper: float = param(
        20.0, help="T₀; each step T += clip(r − 2, −2, 0) and a user leaves at T < 1."
    )
    item_correlation: float = param(
        0.2,
        help="ρ of the item-correlation penalty: each behaviour probability × (1 − ρ·mean cosine to the slate).",
    )
    single_response: bool = param(
        True,
        help="Reward = slate-mean click (KuaiSim's scripts); off = pos/neg-ratio weights, hate negative.",
    )
    start_split: str = param(
        "all", help="Rows a fresh user starts from (KuaiSim: all rows of every user).", choices=START_SPLITS
    )
    seed: int = param(0, help="Seed of the env's own generator (fresh users, Bernoulli responses).")
    # -- faithful switches (False = fixed) ---------------------------------------------------------------------
    faithful: bool = param(False, help="Preset: every env switch below on (KuaiSim as published).")
    dropout_in_simulation: bool = param(False, help="§8 #9: response model in train mode while simulating.")
    correlation_mean_over_dim: bool = param(
        False, help="§8 #12: p − ρ·Σ_j cos/(K·d) (≤ 0.003), not the factor p·(1 − ρ·Σ_j cos/K)."
    )

    def __post_init__(self) -> None:
        _check_positive("env", self, ("batch_users", "slate_size"))
        if not self.initial_temper >= 1.0:
            raise ConfigError(f"env.initial_temper must be >= 1, got {self.initial_temper!r}")
        if not self.item_correlation >= 0.0:
            raise ConfigError(f"env.item_correlation must be >= 0, got {self.item_correlation!r}")
        if self.start_split not in START_SPLITS:
            raise ConfigError(
                f"env.start_split must be one of {', '.join(START_SPLITS)}, got {self.start_split!r}"
            )


def response_switches(cfg: SimulatorConfig) -> dict[str, bool]:
    """Each response-model switch after the ``faithful`` preset (all on) is applied."""
    return {name: bool(cfg.faithful or getattr(cfg, name)) for name in RESPONSE_SWITCHES}


def env_switches(cfg: EnvConfig) -> dict[str, bool]:
    """Each env switch after the ``faithful`` preset (all on) is applied."""
    return {name: bool(cfg.faithful or getattr(cfg, name)) for name in ENV_SWITCHES}
