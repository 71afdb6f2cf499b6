"""Agent hyperparameters (hac_kuaisim.md §5.5, §5.6) with recrl's fixed defaults.

The defaults are KuaiSim's script values where those are not bugs; the documented bugs (§8 #2, #3, #4, #6, #7)
are fixed, not switchable here: the TD target uses (1 − done), the exploration noise is N(0, σ²), A2C trains its
critic, TD3 delays its actor and smooths its target, and HAC's alignment loss is a weighted term of the actor
loss (λ_h = ``hyper_actor_coef``) instead of an Adam step at lr λ_h.
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class AgentConfig:
    """Hyperparameters shared by every agent; each agent reads the ones it uses."""

    # -- policy backbone (§5.1): item/user latent 16, enc 32 (tokens 64, state 96), 4 heads, FF 64, 3 layers
    latent: int = 16
    enc_dim: int = 32
    n_heads: int = 4
    ff_dim: int = 64
    n_layers: int = 3
    dropout: float = 0.1
    action_hidden: tuple[int, ...] = (256, 64)
    critic_hidden: tuple[int, ...] = (256, 64)
    inverse_hidden: tuple[int, ...] = (256,)
    # -- optimisation (§5.5)
    gamma: float = 0.9
    tau: float = 0.01  # soft target update θ' ← τθ + (1 − τ)θ'
    batch_size: int = 128
    buffer_size: int = 100_000
    actor_lr: float = 1e-5
    actor_decay: float = 1e-5
    critic_lr: float = 1e-3
    critic_decay: float = 1e-5
    # -- exploration (§5.1, §5.4): Z + clamp(N(0, σ²), −c, c); a random Z for the whole batch with probability ε
    noise_std: float = 0.1
    noise_clip: float = 1.0
    epsilon_initial: float = 0.01  # KuaiSim's LinearScheduler(initial = final = 0.01): a constant ε
    epsilon_final: float = 0.01
    epsilon_steps: int = 2000
    # -- HAC (§5.3)
    hyper_actor_coef: float = 0.1  # λ_h: weight of the alignment loss
    behavior_coef: float = 1.0  # weight of the supervised BCE loss in the actor loss
    # -- TD3 (fixed: Fujimoto et al.'s target smoothing and delay; KuaiSim has neither, §5.6)
    target_noise: float = 0.2
    target_noise_clip: float = 0.5
    policy_delay: int = 2
    # -- A2C (§5.6)
    entropy_coef: float = 0.1
    advantage_bias: float = 0.0
    advantage_clip: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.gamma <= 1.0 or not 0.0 < self.tau <= 1.0:
            raise ValueError(f"need gamma in [0, 1] and tau in (0, 1], got {self.gamma}, {self.tau}")
        for name in ("batch_size", "buffer_size", "policy_delay", "enc_dim", "n_layers", "epsilon_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


# Per-agent defaults that differ from the shared ones (§5.6: DDPG's script uses actor lr 1e-4).
AGENT_DEFAULTS: dict[str, dict[str, object]] = {"hac": {}, "ddpg": {"actor_lr": 1e-4}, "td3": {}, "a2c": {}}


def agent_config(name: str, **overrides: object) -> AgentConfig:
    """The fixed defaults of agent ``name`` with ``overrides`` applied."""
    return replace(AgentConfig(), **{**AGENT_DEFAULTS[name], **overrides})
