"""The one config of the RL agents: the ``model`` section of ``recrl train hac|ddpg|td3|a2c``
(hac_kuaisim.md §4, §5.5, §5.6), read by the networks, the agents, the loop and the CLI alike.

Defaults are recrl's *fixed* behaviour with KuaiSim's script values where those are not bugs (DDPG's script
uses actor lr 1e-4: :class:`DDPGRunConfig`), except three chosen so that a default run learns within about
10 CPU-minutes (issue 15, benchmarks/AGENTS_NOTES.md): ``behavior_lr`` 1e-3 (KuaiSim 1e-4), ``policy_history``
20 (the policy's transformer reads the last 20 of the env's 100 history rows: one update costs 0.19 CPU-s instead
of 0.97) and ``iterations`` 3,000 (KuaiSim 2,000). Each faithful switch reproduces one quirk of KuaiSim's agent code
(hac_kuaisim.md §8 numbering, §5.6 for the baselines "as configured"); ``faithful=True`` turns every switch
below on, and the env's (``recrl_cli.sim.config``: dropout in simulation, correlation / d). This table is the
one place the agent switches are documented:

=====================  ======  ==========  ===============================================================
switch                 §       agents      effect when on (faithful); fixed default in brackets
=====================  ======  ==========  ===============================================================
td_done_bug            8 #2    hac ddpg    y = r + γ·done·V': only terminal transitions bootstrap
                               a2c         [y = r + γ(1 − done)V']
td3_discount_bug       8 #3    td3         y = r + (γ·done + (1 − done))·min(Q1', Q2'): γ on terminals, 1
                                           elsewhere [r + γ(1 − done) min]
frozen_critic          8 #4    a2c         V(s), V(s') from critic_target, which no optimiser holds: the
                                           baseline stays the random initial critic [V trained]
alignment_lr_bug       8 #6    hac         three Adam steps per update, each on a fresh forward: L_π (actor
                                           lr), λ_h·L_H on θ ∪ ψ at lr λ_h, λ_b·L_BCE at behavior_lr [L_π +
                                           λ_h L_H at the actor lr and λ_b L_BCE at behavior_lr, both
                                           gradients from one forward]
uniform_noise          8 #7    all         exploration noise clamp(U[0, 1)·σ, −c, c), the random batch
                                           too [clamp(N(0, σ²), −c, c)]
td3_no_delay           5.6     td3         actor and targets updated every step [every policy_delay]
td3_explore_smoothing  5.6     td3         target action = the exploration perturbation of f'(s') (σ, c, ε
                                           of the policy) [+ clamp(N(0, target_noise²), ±target_noise_clip)]
a2c_topk_softmax       5.6     a2c         L_π = −mean Σ_k log softmax(score)(i_k)·A over the current
                                           policy's top-K items + β Σ p log p [Gaussian log π(Z^buf | s)]
=====================  ======  ==========  ===============================================================

Not reproduced: KuaiSim's critics read the behaviour policy's stored state s^buf (recrl: the current encoder's,
detached), and the policy acts in train mode (recrl: eval mode, so evaluation is deterministic).
"""

from __future__ import annotations

from dataclasses import dataclass

from recrl_cli.config.fields import param
from recrl_cli.errors import ConfigError
from recrl_cli.sim.config import START_SPLITS
from recrl_cli.text.config import (
    check_text_options,
    item_encoder_field,
    text_max_len_field,
    text_mode_field,
    text_model_field,
)

EFFECT_ACTIONS = ("topk", "sample")
SWITCHES = ("td_done_bug", "td3_discount_bug", "frozen_critic", "alignment_lr_bug", "uniform_noise",
            "td3_no_delay", "td3_explore_smoothing", "a2c_topk_softmax")  # fmt: skip


@dataclass(frozen=True)
class AgentRunConfig:
    """The ``model`` section of ``recrl train hac|ddpg|td3|a2c``; each agent reads the fields it uses."""

    simulator: str = param(
        "",
        help="Trained simulator: a `recrl train simulator` run directory, its model.pt, an MLflow run id or "
        "run name, or latest.",
    )
    # -- env (hac_kuaisim.md §4)
    batch_users: int = param(32, help="B: users simulated in parallel (leavers are replaced in place).")
    slate_size: int = param(6, help="K: items recommended per step (<= the simulator's history length).")
    initial_temper: float = param(
        20.0, help="T₀; each step T += clip(r − 2, −2, 0) and a user leaves at T < 1."
    )
    item_correlation: float = param(0.2, help="ρ of the item-correlation penalty on behaviour probabilities.")
    single_response: bool = param(True, help="Reward = slate-mean click; off = pos/neg-ratio weights.")
    start_split: str = param("all", help="Rows a fresh user starts from.", choices=START_SPLITS)
    # -- loop (§5.4)
    warmup_steps: int = param(100, help="Env steps with random hyper-actions filling the buffer first.")
    iterations: int = param(
        3000, help="Training iterations: one env step + updates_per_step gradient steps (KuaiSim: 2,000)."
    )
    updates_per_step: int = param(1, help="Gradient steps per env step.")
    eval_steps: int = param(
        200,
        help="Env steps of the evaluation (exploration off) and of the random / popular / oracle policies.",
    )
    eval_users: int = param(64, help="Users simulated in parallel in the evaluation env.")
    eval_horizon: int = param(
        20, help="Steps a session is followed in the evaluation (total_reward = return over them)."
    )
    eval_seed: int = param(1_000_003, help="Env seed of the evaluation users (far from training seeds).")
    window: int = param(10, help="Last training steps / updates averaged in the reported train metrics.")
    # -- policy backbone (§5.1): item/user latent 16, enc 32 (tokens 64, state 96), 4 heads, FF 64, 3 layers
    latent: int = param(16, help="Item/user latent width of the policy's encoders.")
    enc_dim: int = param(32, help="Policy encoding width (tokens 2x, state 3x).")
    n_heads: int = param(4, help="Attention heads of the policy's transformer.")
    ff_dim: int = param(64, help="Feed-forward width of the policy's transformer.")
    n_layers: int = param(3, help="Transformer layers of the policy.")
    policy_history: int = param(
        20,
        help="History rows the policy's transformer reads: the most recent N of the env's H (0 = all H, as "
        "KuaiSim; 5x the cost per update at H = 100).",
    )
    dropout: float = param(0.1, help="Dropout of the policy.")
    action_hidden: tuple[int, ...] = param((256, 64), help="Hidden widths of the hyper-action head.")
    critic_hidden: tuple[int, ...] = param((256, 64), help="Hidden widths of the critic(s).")
    inverse_hidden: tuple[int, ...] = param((256,), help="Hidden widths of HAC's inverse module.")
    # -- optimisation (§5.5)
    gamma: float = param(0.9, help="Discount factor.")
    tau: float = param(0.01, help="Soft target update fraction.")
    batch_size: int = param(128, help="Transitions per gradient step.")
    buffer_size: int = param(100_000, help="Replay buffer slots (transitions of one user).")
    actor_lr: float = param(1e-5, help="Actor Adam learning rate.")
    actor_decay: float = param(1e-5, help="Actor Adam weight decay.")
    critic_lr: float = param(1e-3, help="Critic Adam learning rate.")
    critic_decay: float = param(1e-5, help="Critic Adam weight decay.")
    # -- exploration (§5.1, §5.4): Z + clamp(N(0, σ²), −c, c); a random Z for the whole batch with probability ε
    noise_std: float = param(0.1, help="σ of the Gaussian exploration noise on the hyper-action.")
    noise_clip: float = param(1.0, help="Clip of the exploration noise.")
    epsilon_initial: float = param(0.01, help="ε (random hyper-action for the batch) at the start.")
    epsilon_final: float = param(0.01, help="ε after epsilon_steps exploring steps.")
    epsilon_steps: int = param(2000, help="Steps of the linear ε schedule.")
    effect_action: str = param(
        "topk", help="Exploring slate: the top-K of the explored hyper-action's scores, or K items sampled "
        "without replacement from softmax(score / sample_temperature). Evaluation always takes the top-K.",
        choices=EFFECT_ACTIONS,
    )  # fmt: skip
    sample_temperature: float = param(0.1, help="Temperature of the effect-action sampling.")
    # -- agent specific (§5.3, §5.6)
    hyper_actor_coef: float = param(0.1, help="HAC: λ_h, weight of the alignment loss.")
    behavior_coef: float = param(1.0, help="HAC: weight of the supervised behaviour loss.")
    behavior_lr: float = param(
        1e-3, help="HAC: Adam lr of the supervised behaviour-loss step (its own optimiser; KuaiSim 1e-4)."
    )
    behavior_decay: float = param(3e-5, help="HAC: weight decay of the behaviour-loss optimiser.")
    target_noise: float = param(0.2, help="TD3: target smoothing noise σ.")
    target_noise_clip: float = param(0.5, help="TD3: clip of the target smoothing noise.")
    policy_delay: int = param(2, help="TD3: critic updates per actor update.")
    entropy_coef: float = param(0.1, help="A2C: entropy bonus weight.")
    advantage_bias: float = param(0.0, help="A2C: bias added to the advantage.")
    advantage_clip: float = param(1.0, help="A2C: clip of the advantage.")
    # -- faithful switches (False = fixed; the table in recrl_cli/agents/config.py) -----------------------------
    faithful: bool = param(
        False, help="Preset: every agent switch below and the env's switches on (KuaiSim as published)."
    )
    td_done_bug: bool = param(False, help="§8 #2: y = r + γ·done·V' (HAC, DDPG, A2C).")
    td3_discount_bug: bool = param(False, help="§8 #3: TD3 y = r + (γ·done + 1 − done)·min Q'.")
    frozen_critic: bool = param(False, help="§8 #4: A2C's V from the never-trained critic_target.")
    alignment_lr_bug: bool = param(False, help="§8 #6: HAC's three Adam steps, the alignment one at lr λ_h.")
    uniform_noise: bool = param(False, help="§8 #7: exploration noise U[0, 1)·σ, not N(0, σ²).")
    td3_no_delay: bool = param(False, help="§5.6: TD3 updates its actor every step (no delay).")
    td3_explore_smoothing: bool = param(
        False, help="§5.6: TD3 smooths its target with the exploration noise."
    )
    a2c_topk_softmax: bool = param(
        False, help="§5.6: A2C log π = softmax log-prob of the current top-K items."
    )
    dropout_in_simulation: bool = param(False, help="Env §8 #9: response model in train mode (dropout on).")
    correlation_mean_over_dim: bool = param(False, help="Env §8 #12: correlation penalty divided by d too.")
    # -- item text (recrl_cli/text): the projected text vector joins the policy's item kernel
    item_encoder: str = item_encoder_field()
    text_model: str = text_model_field()
    text_mode: str = text_mode_field()
    text_max_len: int = text_max_len_field()

    def __post_init__(self) -> None:
        check_text_options(self)
        for name in ("batch_users", "slate_size", "warmup_steps", "iterations", "eval_steps", "eval_users",
                     "eval_horizon", "window",
                     "batch_size", "buffer_size", "policy_delay", "enc_dim", "n_layers", "epsilon_steps"):  # fmt: skip
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"model.{name} must be a positive integer, got {value!r}")
        if self.effect_action not in EFFECT_ACTIONS:
            raise ConfigError(
                f"model.effect_action must be one of {', '.join(EFFECT_ACTIONS)}, got {self.effect_action!r}"
            )
        if not self.sample_temperature > 0:
            raise ConfigError(f"model.sample_temperature must be > 0, got {self.sample_temperature!r}")
        if (
            isinstance(self.policy_history, bool)
            or not isinstance(self.policy_history, int)
            or self.policy_history < 0
        ):
            raise ConfigError(f"model.policy_history must be an integer >= 0, got {self.policy_history!r}")
        if self.updates_per_step < 0:
            raise ConfigError(f"model.updates_per_step must be >= 0, got {self.updates_per_step!r}")
        if not 0.0 <= self.gamma <= 1.0 or not 0.0 < self.tau <= 1.0:
            raise ConfigError(
                f"need model.gamma in [0, 1] and model.tau in (0, 1], got {self.gamma}, {self.tau}"
            )


@dataclass(frozen=True)
class DDPGRunConfig(AgentRunConfig):
    """DDPG's script uses actor lr 1e-4 (hac_kuaisim.md §5.6)."""

    actor_lr: float = param(1e-4, help="Actor Adam learning rate.")


CONFIGS: dict[str, type[AgentRunConfig]] = {"hac": AgentRunConfig, "ddpg": DDPGRunConfig, "td3": AgentRunConfig,
                                            "a2c": AgentRunConfig}  # fmt: skip


def agent_config(name: str, **overrides: object) -> AgentRunConfig:
    """The fixed defaults of agent ``name`` with ``overrides`` applied."""
    return CONFIGS[name](**overrides)


def agent_switches(cfg: AgentRunConfig) -> dict[str, bool]:
    """Each agent switch after the ``faithful`` preset (all on) is applied."""
    return {name: bool(cfg.faithful or getattr(cfg, name)) for name in SWITCHES}
