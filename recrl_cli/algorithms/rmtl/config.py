"""RMTL's ``model`` section: the MTL base's sizes (flat, same names as MTLConfig) plus the RL stages and switches.

Defaults are the *fixed* behaviour. Each faithful switch reproduces one documented quirk of the official code
(rmtl.md §7.3, bug numbers in the help strings); ``faithful=True`` turns them all on (see :func:`effective_switches`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from recrl_cli.config.fields import param
from recrl_cli.errors import ConfigError
from recrl_cli.nets.mtl import MTL_BASES
from recrl_cli.nets.mtl.config import MTLConfig, _positive_dims
from recrl_cli.text.config import item_encoder_field, text_max_len_field, text_mode_field, text_model_field

BASES = tuple(MTL_BASES)
WEIGHTINGS = ("rmtl", "cw", "wl", "nlc", "bce-continue", "mean-weight")
# Weightings whose polish never queries the critics: the critic stage is skipped for them.
CRITIC_FREE_WEIGHTINGS = ("cw", "bce-continue")
SWITCHES = (
    "normalize_state_ids",
    "action_affine_mismatch",
    "random_actions",
    "critic_dropout_at_polish",
    "identical_critic_init",
    "twin_min_same_critic",
    "tiny_target_noise",
    "relu_critic_output",
    "swap_val_test",
    "unshuffled",
    "polish_forgets_pretrained",
)
_MTL_FIELDS = tuple(f.name for f in dataclasses.fields(MTLConfig))


@dataclass(frozen=True)
class RMTLConfig:
    """Hyperparameters of ``recrl train rmtl`` (pretrain → critics by TD → polish)."""

    # -- the MTL base (the actor); same names and defaults as MTLConfig ---------------------------------------
    base: str = param("mmoe", help="MTL base that is pretrained and polished.", choices=BASES)
    embed_dim: int = param(128, help="Base: embedding width D of every categorical field.")
    bottom_dims: tuple[int, ...] = param(
        (512, 256), help="Base: bottom/expert MLP widths (PLE: one level each)."
    )
    tower_dims: tuple[int, ...] = param((128, 64), help="Base: task tower widths (a Linear(→1) is added).")
    dropout: float = param(0.2, help="Base: dropout after every hidden layer, in [0, 1).")
    expert_num: int = param(8, help="Base: MoE experts (PLE: half shared, half per task; must be even).")
    history: str = param(
        "mean",
        help="Base: session-history pooling (mean, attention) or off.",
        choices=("off", "mean", "attention"),
    )
    bias_init: str = param(
        "prior",
        help="Base: output bias at start, prior (training log-odds) or zero.",
        choices=("prior", "zero"),
    )
    item_encoder: str = item_encoder_field()
    text_model: str = text_model_field()
    text_mode: str = text_mode_field()
    text_max_len: int = text_max_len_field()
    # -- stage 1: pretrain --------------------------------------------------------------------------------------
    pretrain_epochs: int = param(20, help="Pretrain (plain BCE) epochs, upper bound; early stopping on val.")
    # -- stage 2: critics -------------------------------------------------------------------------------------
    critic_epochs: int = param(
        10, help="TD passes over the session MDP's transitions, one per train row (reference: ≈23.4k steps)."
    )
    critic_lr: float = param(1e-3, help="Adam learning rate of the critics.")
    critic_batch_size: int = param(2048, help="Transitions per TD step.")
    critic_embed_dim: int = param(128, help="Critic: embedding width of its own feature embedding.")
    critic_bottom_dims: tuple[int, ...] = param((512, 256), help="Critic: bottom MLP widths.")
    critic_tower_dims: tuple[int, ...] = param(
        (128, 64), help="Critic: tower widths (a Linear(→1) is added)."
    )
    critic_dropout: float = param(0.2, help="Critic: dropout after every hidden layer, in [0, 1).")
    gamma: float = param(0.95, help="Discount γ of the TD target (default = paper 0.95; official code 0.9).")
    tau: float = param(0.2, help="Soft target update θ' ← τθ + (1−τ)θ'.")
    target_update_every: int = param(2, help="Soft-update the target critics every N TD steps.")
    context: bool = param(
        True,
        help="Critic state += session context: position in the session and the previous event's labels "
        "(off when faithful).",
    )
    critic_init_from_actor: bool = param(
        True, help="Start the critics' feature embeddings from the pretrained base's (reference L85-86)."
    )
    critics: str = param(
        "",
        help="'' = fit critics here; else the model.pt, run directory, MLflow run id or run name of an earlier "
        "rmtl run whose critics polish this base (transfer; the critic stage is skipped).",
    )
    # -- stage 3: polish --------------------------------------------------------------------------------------
    polish_epochs: int = param(20, help="Polish epochs, upper bound; early stopping vs the pretrained model.")
    polish_lr: float = param(1e-3, help="Adam learning rate of the polish stage (a fresh optimizer).")
    lam: float = param(0.7, help="λ in the weight 1 − λ·Q (default = paper 0.7; official README 1.0).")
    cw_weight: float = param(0.5, help="The constant weight of weighting=cw (reference 0.5).")
    weighting: str = param(
        "rmtl",
        help="Polish weight: rmtl 1−λQ, wl 1−λyQ, nlc −Q, cw cw_weight, bce-continue 1, mean-weight mean(1−λQ).",
        choices=WEIGHTINGS,
    )
    normalize_weights: bool = param(
        False,
        help="Divide each task's polish weights by their batch mean: only the per-sample modulation is left, "
        "not the loss scale (a control for RMTL's unnormalised weights).",
    )
    # -- faithful switches (False = fixed) ------------------------------------------------------------------
    faithful: bool = param(
        False, help="Preset: every faithful switch on and the session context off (γ, λ unchanged: set them)."
    )
    normalize_state_ids: bool = param(False, help="Bug 3: z-score ids per TD batch, truncate to int.")
    action_affine_mismatch: bool = param(False, help="Bug 4: buffer stores a, reward computed at 0.5a+0.5.")
    random_actions: bool = param(False, help="§2.2: buffer actions uniform in [0,1] instead of the actor's.")
    critic_dropout_at_polish: bool = param(False, help="Bug 6: critics in dropout mode when weighting.")
    identical_critic_init: bool = param(False, help="Bug 13: every critic starts as a copy of the first.")
    twin_min_same_critic: bool = param(False, help="Bug 14: target min over target and online copy.")
    tiny_target_noise: bool = param(False, help="Bug 15: a' += clip(N(0,0.4), ±0.003), one per task/batch.")
    relu_critic_output: bool = param(False, help="Q = −relu(z) like the reference (default −softplus(z)).")
    swap_val_test: bool = param(False, help="Bug 2: early stop on test; reported test/ numbers are val.")
    unshuffled: bool = param(False, help="Bug 8: pretrain/polish batches in stored order.")
    polish_forgets_pretrained: bool = param(
        False, help="Bug 16: polish early stopping starts from scratch, never keeping the pretrained model."
    )

    def __post_init__(self) -> None:
        if self.base not in BASES:
            raise ConfigError(f"model.base must be one of {', '.join(BASES)}, got {self.base!r}")
        if self.weighting not in WEIGHTINGS:
            raise ConfigError(
                f"model.weighting must be one of {', '.join(WEIGHTINGS)}, got {self.weighting!r}"
            )
        mtl = self.mtl_config()  # validates the base sizes with MTLConfig's own rules
        object.__setattr__(self, "bottom_dims", mtl.bottom_dims)  # frozen: normalise lists to tuples
        object.__setattr__(self, "tower_dims", mtl.tower_dims)
        for name in ("critic_bottom_dims", "critic_tower_dims"):
            allow_empty = name == "critic_tower_dims"
            object.__setattr__(self, name, _positive_dims(name, getattr(self, name), allow_empty=allow_empty))
        for name in ("pretrain_epochs", "critic_epochs", "polish_epochs", "critic_batch_size", "critic_embed_dim",
                     "target_update_every"):  # fmt: skip
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"model.{name} must be a positive integer, got {value!r}")
        for name in ("critic_lr", "polish_lr"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"model.{name} must be positive, got {getattr(self, name)!r}")
        if not 0.0 <= self.gamma < 1.0:
            raise ConfigError(f"model.gamma must be in [0, 1), got {self.gamma!r}")
        if not 0.0 < self.tau <= 1.0:
            raise ConfigError(f"model.tau must be in (0, 1], got {self.tau!r}")
        if not 0.0 <= self.critic_dropout < 1.0:
            raise ConfigError(f"model.critic_dropout must be in [0, 1), got {self.critic_dropout!r}")
        if not self.lam >= 0.0:
            raise ConfigError(f"model.lam must be >= 0, got {self.lam!r}")
        if not self.cw_weight > 0.0:
            raise ConfigError(f"model.cw_weight must be positive, got {self.cw_weight!r}")

    def mtl_config(self) -> MTLConfig:
        """The base network's sizes as an :class:`MTLConfig` (what ``build_base`` takes)."""
        return MTLConfig(**{name: getattr(self, name) for name in _MTL_FIELDS})

    @property
    def uses_critics(self) -> bool:
        """Whether the polish weights read the critics (``cw`` and ``bce-continue`` do not)."""
        return self.weighting not in CRITIC_FREE_WEIGHTINGS


def effective_switches(cfg: RMTLConfig) -> dict[str, bool]:
    """Each faithful switch's value after the ``faithful`` preset (all on) is applied.

    The key ``context`` is the effective position-context flag: the reference state has no position, so the
    preset turns it off.
    """
    out = {name: bool(cfg.faithful or getattr(cfg, name)) for name in SWITCHES}
    out["context"] = bool(cfg.context and not cfg.faithful)
    return out
