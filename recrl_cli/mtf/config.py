"""The ``model`` section of ``recrl train unifiedrl`` and of the fusion baselines ``recrl train mtf-*``.

Defaults are a quick CPU look (a few minutes on tiny data). ``preset=paper`` replaces every field still at its
quick default by the paper-size value of :data:`PAPER` (unifiedrl_hrlrec.md A4 table: 24 critics, batch 256,
300k iterations, hidden 256-128; the env and budget sizes are recrl's choice for a GPU run).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from recrl_cli.config.fields import param
from recrl_cli.errors import ConfigError
from recrl_cli.mtf.env import FALLBACK_WEIGHTS

NOISE_CHOICES = ("auto", "gaussian", "uniform")
PRESETS = ("quick", "paper")
PAPER = {"critics": 24, "batch_size": 256, "hidden": (256, 128), "iterations": 300_000, "batch_users": 256,
         "collect_steps": 1000, "cem_iterations": 30, "cem_population": 64, "eval_waves": 20,
         "test_steps": 100}  # fmt: skip


@dataclass(frozen=True)
class MTFRunConfig:
    """Fusion env, behaviour policy, logged data, learner and evaluation of one fusion run."""

    simulator: str = param(
        "",
        help="Ground-truth user simulator: a `recrl train simulator` run dir, model.pt, MLflow run id or "
        "run name, or latest.",
    )
    ranker: str = param("", help="MTL ranker to fuse: another simulator run, or an MTL base / rmtl run trained on the "
                        "same KuaiRand data (run dir, model.pt, run id or name, or latest); empty or taste-free = the simulator "
                        "without its users' taste rows (a stand-in ranker with per-user errors: +10 % of fusion room on "
                        "the 1,000-user set); self = the simulator itself (an oracle ranker: +0.3 %, no room; logged "
                        "as ranker_is_simulator=1).")  # fmt: skip
    preset: str = param(
        "quick", help="quick (CPU look) or paper (paper-size learner and budget).", choices=PRESETS
    )
    # -- env
    batch_users: int = param(32, help="B: users served in parallel (leavers replaced in place).")
    slate_size: int = param(6, help="K: items shown per request (top K by the fused score).")
    retrieved: int = param(40, help="Candidates from the retriever (history-similarity top-N).")
    random_candidates: int = param(10, help="Extra random pool candidates per request.")
    initial_temper: float = param(20.0, help="T0 of the temper leave model.")
    item_correlation: float = param(0.2, help="ρ of the simulator's item-correlation penalty.")
    weights: tuple[float, ...] = param(FALLBACK_WEIGHTS, help="Reward weights per item: valid consumption, watch "
                                       "minute, like, follow, comment, forward, hate (subtracted).")  # fmt: skip
    weights_from: str = param("data", help="data (default): fit the weights on the train rows (regression of play "
                              "minutes on behaviour counts per user, the paper's correlation-with-dwell recipe); "
                              "config: use --weights as given.", choices=("config", "data"))  # fmt: skip
    # -- behaviour policy (ES/CEM)
    cem_iterations: int = param(5, help="CEM generations tuning μ_bp.")
    cem_population: int = param(16, help="CEM population (<= batch_users).")
    cem_steps: int = param(10, help="Requests per CEM generation.")
    action_scale: float = param(0.7, help="μ_bp = scale·tanh(·): keeps μ_bp ± bounds inside [−1, 1].")
    # -- logged data
    noise: str = param("auto", help="Exploration: auto (unifiedrl uniform, baselines gaussian), gaussian, uniform.",
                       choices=NOISE_CHOICES)  # fmt: skip
    bounds: float = param(
        0.15, help="b: uniform exploration box ±b around μ_bp (UnifiedRL's bound), normalised."
    )
    gaussian_std: float = param(0.2, help="σ of the Gaussian exploration (D1).")
    ptm: bool = param(
        True, help="UnifiedRL: progressive training mode (rounds re-centred on the learned policy)."
    )
    rounds: int = param(5, help="PTM rounds (the budget is split evenly).")
    collect_steps: int = param(40, help="Requests per env row logged in total (over all rounds).")
    ptm_guard: bool = param(
        True,
        help="UnifiedRL with PTM: keep a round's policy as the next centre (and as the "
        "result) only if a validation A/B on held-out users, paired against the current centre, "
        "finds it not worse (reward change >= 0); else keep the centre.",
    )
    guard_users: int = param(
        256,
        help="PTM guard: sessions of the per-round validation A/B (env seeds apart from "
        "the training and evaluation seeds).",
    )
    logs_dir: str = param(
        "",
        help="Directory for the Parquet logs (one subdirectory per run); empty = "
        "<run dir>/mtf-logs, next to the run's model and metrics.",
    )
    # -- learner
    iterations: int = param(300, help="Gradient steps in total (over all rounds).")
    batch_size: int = param(64, help="Transitions per gradient step (paper 256).")
    hidden: tuple[int, ...] = param((64, 64), help="Actor and critic hidden widths (paper 256-128).")
    gamma: float = param(0.9, help="γ (paper 0.9).")
    actor_lr: float | None = param(None, help="Learner's actor (policy) Adam learning rate; none = the learner's "
                                   "own default (3e-4; CQL 1e-4).")  # fmt: skip
    critic_lr: float | None = param(None, help="Learner's critic Adam learning rate; none = the learner's own "
                                    "default (3e-4).")  # fmt: skip
    critics: int = param(4, help="UnifiedRL: m critics per set (paper 24).")
    penalty: bool = param(True, help="UnifiedRL: bound penalty η·d in the actor loss.")
    eta: float = param(1.0, help="UnifiedRL: η, weight of the bound penalty (unpublished; chosen).")
    beta: float = param(0.3, help="UnifiedRL: β of Eq. 5 (paper 0.3).")
    uncertainty: float = param(0.2, help="UnifiedRL: λ, weight of the ensemble std (paper 0.2).")
    soft_rate: float = param(0.08, help="UnifiedRL: ω soft update rate (paper 0.08).")
    target_every: int = param(
        0,
        help="UnifiedRL: L, updates between soft updates (paper 15 at 300k updates); "
        "0 = scaled to the budget, max(1, round(15·iterations/300k)), so the targets track "
        "the critics at a few hundred updates as they do at the paper's 300k.",
    )
    # -- evaluation
    eval_seed: int = param(1_000_003, help="First env seed of the evaluation (far from training seeds).")
    eval_waves: int = param(4, help="A/B waves: each runs eval_users sessions per policy on one env seed.")
    eval_users: int = param(
        256,
        help="A/B sessions per wave (0 = batch_users). Every policy meets the same users "
        "and random streams (common random numbers), so the change vs ES is paired.",
    )
    test_steps: int = param(20, help="Requests per env row in the test log (μ_bp, no noise) and NCIS log.")
    ncis_cap: float = param(10.0, help="c: cap of the NCIS importance weights.")
    ncis_kernel: float = param(0.0, help="h: half-width of the box kernel smoothing the policy (0 = bounds).")

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise ConfigError(f"model.preset must be one of {', '.join(PRESETS)}, got {self.preset!r}")
        if self.preset == "paper":
            quick = {f.name: f.default for f in dataclasses.fields(MTFRunConfig)}
            for k, v in PAPER.items():
                if getattr(self, k) == quick[k]:
                    object.__setattr__(self, k, v)
        for name in ("batch_users", "slate_size", "retrieved", "cem_iterations", "cem_population", "cem_steps",
                     "rounds", "collect_steps", "iterations", "batch_size", "critics", "guard_users",
                     "eval_waves", "test_steps"):  # fmt: skip
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"model.{name} must be a positive integer, got {value!r}")
        if (
            isinstance(self.target_every, bool)
            or not isinstance(self.target_every, int)
            or self.target_every < 0
        ):
            raise ConfigError(
                f"model.target_every must be an integer >= 0 (0 = scaled), got {self.target_every!r}"
            )
        if isinstance(self.eval_users, bool) or not isinstance(self.eval_users, int) or self.eval_users < 0:
            raise ConfigError(f"model.eval_users must be an integer >= 0, got {self.eval_users!r}")
        for name in ("actor_lr", "critic_lr"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ConfigError(f"model.{name} must be positive, got {value!r}")
        if self.random_candidates < 0:
            raise ConfigError(f"model.random_candidates must be >= 0, got {self.random_candidates!r}")
        if not 0.0 < self.bounds <= 1.0 or not 0.0 < self.gaussian_std <= 1.0:
            raise ConfigError(f"model.bounds and model.gaussian_std must be in (0, 1], got {self.bounds!r}, "
                              f"{self.gaussian_std!r}")  # fmt: skip
        if not 0.0 < self.action_scale <= 1.0:
            raise ConfigError(f"model.action_scale must be in (0, 1], got {self.action_scale!r}")
        if len(self.weights) != 7:
            raise ConfigError(f"model.weights needs 7 values, got {len(self.weights)}")
        if self.weights_from not in ("config", "data"):
            raise ConfigError(f"model.weights_from must be config or data, got {self.weights_from!r}")
        if self.noise not in NOISE_CHOICES:
            raise ConfigError(f"model.noise must be one of {', '.join(NOISE_CHOICES)}, got {self.noise!r}")
        if self.ncis_cap <= 0 or self.ncis_kernel < 0:
            raise ConfigError("model.ncis_cap must be > 0 and model.ncis_kernel >= 0")
        if self.cem_population > self.batch_users:
            raise ConfigError(f"model.cem_population ({self.cem_population}) must be <= batch_users "
                              f"({self.batch_users})")  # fmt: skip
