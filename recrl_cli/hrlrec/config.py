"""The ``model`` section of ``recrl train hrlrec`` (defaults: the released LRA's values where it has them,
unifiedrl_hrlrec.md B5; the rest documented in B3/B4 proposals)."""

from __future__ import annotations

from dataclasses import dataclass

from recrl_cli.config.fields import param
from recrl_cli.errors import ConfigError
from recrl_cli.hrlrec.agent import LOSS_SETS
from recrl_cli.hrlrec.channels import CHANNEL_BY
from recrl_cli.hrlrec.rewards import REWARD_SETS, RewardWeights
from recrl_cli.sim.config import START_SPLITS

VARIANTS = ("hrlrec", "flat-ddpg", "quota", "single-ranker")
MODES = ("online", "offline", "offline+online")


@dataclass(frozen=True)
class HRLRecConfig:
    """HRL-Rec and its baselines in the KuaiRand simulator."""

    simulator: str = param(
        "",
        help="Trained simulator: a `recrl train simulator` run directory, its model.pt, an MLflow run id or "
        "run name, or latest.",
    )
    variant: str = param("hrlrec", help="hrlrec (selector + recommender), flat-ddpg (no channel level), "
                         "quota (fixed channel quota + ranker), single-ranker (ranker, channels ignored).",
                         choices=VARIANTS)  # fmt: skip
    mode: str = param("online", help="Training data: simulated lists, logged train lists, or logged then simulated.",
                      choices=MODES)  # fmt: skip
    # -- channels
    channel_by: str = param("upload_type", help="Item column the channels come from.", choices=CHANNEL_BY)
    max_channels: int = param(6, help="Most frequent values kept as channels; the rest merge into 'other'.")
    per_channel: int = param(200, help="Candidates per channel (top by the channel's ranker).")
    prior_strength: float = param(
        20.0, help="Pseudo-impressions shrinking an item's click rate to its channel's."
    )
    # -- env and loop
    list_length: int = param(10, help="T: items per list (= the env's slate; <= the simulator's history).")
    batch_users: int = param(32, help="B: users simulated in parallel.")
    initial_temper: float = param(20.0, help="T₀ of the env's leave model.")
    item_correlation: float = param(0.2, help="ρ of the env's item-correlation penalty.")
    start_split: str = param("all", help="Rows a fresh user starts from.", choices=START_SPLITS)
    warmup_steps: int = param(20, help="Env steps of random lists filling the buffer before online training.")
    iterations: int = param(300, help="Online training: env steps (B lists each) + updates_per_step updates.")
    updates_per_step: int = param(1, help="Gradient steps per env step.")
    offline_epochs: int = param(2, help="Epochs over the logged train lists (mode offline / offline+online).")
    batch_size: int = param(64, help="Lists per gradient step.")
    buffer_size: int = param(20_000, help="Replay buffer lists.")
    eval_days: int = param(5, help="Simulated days of the evaluation.")
    day_steps: int = param(20, help="Env steps per simulated day (B lists each).")
    eval_seed: int = param(1_000_003, help="Env seed of the evaluation users.")
    # -- networks
    latent: int = param(16, help="Latent width of the user-state encoder's feature embeddings.")
    enc_dim: int = param(32, help="d: encoder width (user state 3d, list encoder d).")
    n_heads: int = param(4, help="Attention heads (user history and list encoders).")
    ff_dim: int = param(64, help="Feed-forward width of the history transformer.")
    n_layers: int = param(1, help="History transformer layers.")
    dropout: float = param(0.1, help="Dropout.")
    action_dim: int = param(32, help="e: width of the fixed item/channel action embeddings.")
    hidden: int = param(64, help="Hidden width of the critics' heads.")
    # -- optimisation (released LRA: γ 0.3, τ 0.1 every 30 batches, lr 2e-4, clip 5)
    gamma: float = param(0.3, help="Discount over list positions.")
    tau: float = param(0.1, help="Soft target update fraction.")
    target_every: int = param(30, help="Gradient steps between soft target updates.")
    actor_lr: float = param(2e-4, help="Actors' Adam learning rate.")
    critic_lr: float = param(2e-4, help="Critics' (and user encoder's) Adam learning rate.")
    grad_clip: float = param(5.0, help="Global gradient-norm clip.")
    noise_std: float = param(0.2, help="σ of the truncated-normal (±2σ) exploration noise on both actions.")
    channel_knn: int = param(
        0,
        help="Selector: the k channels nearest the actor's point, re-ranked by the "
        "critic's Q (Wolpertinger); 0 = all channels, 1 = nearest only (no critic).",
    )
    prefix_similarity: bool = param(
        True,
        help="Critics see how close the action is to the same level's "
        "actions already in the list (max and mean dot product).",
    )
    channel_epsilon: float = param(
        0.1, help="Training: probability of a random available channel per position."
    )
    # -- losses and rewards
    losses: str = param(
        "full", help="Extra actor losses: full, no-sup, no-sim, ddpg-only.", choices=LOSS_SETS
    )
    sup_coef: float = param(1.0, help="λ_sup: weight of the supervised loss.")
    sim_coef: float = param(0.1, help="λ_sim: weight of the similarity (InfoNCE) loss.")
    sim_temperature: float = param(0.1, help="τ of the similarity loss.")
    rewards: str = param("full", help="Reward components kept.", choices=REWARD_SETS)
    dwell_weight: float = param(1.0, help="λ_d: dwell reward weight.")
    diversity_weight: float = param(0.2, help="λ_v: diversity reward weight.")
    novelty_weight: float = param(0.2, help="λ_n: novelty reward weight.")
    switch_weight: float = param(0.5, help="λ_c: selector bonus for a channel not in the last two positions.")
    dwell_cap: float = param(120.0, help="Play seconds at which the dwell reward saturates at 1.")
    novelty_window: int = param(50, help="Recent history items the novelty reward compares tags with.")

    def __post_init__(self) -> None:
        for name in ("max_channels", "per_channel", "list_length", "batch_users", "warmup_steps", "batch_size",
                     "buffer_size", "eval_days", "day_steps", "enc_dim", "action_dim", "hidden", "target_every",
                     "novelty_window"):  # fmt: skip
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"model.{name} must be a positive integer, got {value!r}")
        for name in ("iterations", "updates_per_step", "offline_epochs"):
            if getattr(self, name) < 0:
                raise ConfigError(f"model.{name} must be >= 0, got {getattr(self, name)!r}")
        if self.list_length < 2:
            raise ConfigError(f"model.list_length must be >= 2, got {self.list_length}")
        if not 0.0 <= self.gamma <= 1.0 or not 0.0 < self.tau <= 1.0:
            raise ConfigError(
                f"model.gamma must be in [0, 1] and model.tau in (0, 1], got {self.gamma}, {self.tau}"
            )
        if (
            isinstance(self.channel_knn, bool)
            or not isinstance(self.channel_knn, int)
            or self.channel_knn < 0
        ):
            raise ConfigError(f"model.channel_knn must be an integer >= 0, got {self.channel_knn!r}")
        if not 0.0 <= self.channel_epsilon <= 1.0:
            raise ConfigError(f"model.channel_epsilon must be in [0, 1], got {self.channel_epsilon}")
        if self.noise_std < 0 or self.sim_temperature <= 0 or self.dwell_cap <= 0:
            raise ConfigError("model.noise_std must be >= 0 and model.sim_temperature, model.dwell_cap > 0")

    def reward_weights(self) -> RewardWeights:
        return RewardWeights(dwell=self.dwell_weight, diversity=self.diversity_weight, novelty=self.novelty_weight,
                             channel_switch=self.switch_weight, dwell_cap=self.dwell_cap).ablated(self.rewards)  # fmt: skip
