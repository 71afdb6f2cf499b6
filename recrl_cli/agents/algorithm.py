"""``recrl train hac|ddpg|td3|a2c``: an RL agent trained in the whole-session env of a trained simulator.

The run's ``model`` section is an :class:`AgentRunConfig`: the simulator to act in (a ``recrl train simulator``
run directory or its ``model.pt``), the env, the loop sizes and the agent's hyperparameters. The loop of
:mod:`recrl_cli.agents.loop` runs as one trainer stage ``interact``: the warm-up (random hyper-actions, no
gradient steps) happens when the stage starts, then every trainer step is one env step + ``updates_per_step``
gradient steps (``train/interact/reward`` and the losses are logged per step). ``evaluate("test")`` runs the
separate evaluation once (fresh users from ``eval_seed``, exploration off) and reports
``agent/<metric>``, ``random/<metric>``, ``oracle/<metric>`` and ``agent/gap_fraction``; ``"val"`` is empty.

Resume (``--resume``) restores the agent (weights, optimisers, generator, ε clock) but not the replay buffer
nor the env's users: the warm-up runs again to refill the buffer, so a resumed run is not step-for-step the
run it continues.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from recrl_cli.agents import make_agent
from recrl_cli.agents.config import AgentConfig, agent_config
from recrl_cli.agents.loop import REPORTED, AgentLoop, AgentResult, LoopConfig
from recrl_cli.config.fields import param
from recrl_cli.config.schema import RunConfig
from recrl_cli.errors import ConfigError
from recrl_cli.sim.config import START_SPLITS, EnvConfig
from recrl_cli.sim.environment import WholeSessionEnv
from recrl_cli.text.config import (
    check_text_options,
    item_encoder_field,
    text_max_len_field,
    text_mode_field,
    text_model_field,
    uses_text,
)
from recrl_cli.training.trainer import Stage


@dataclass(frozen=True)
class AgentRunConfig:
    """The ``model`` section of ``recrl train hac|ddpg|td3|a2c``."""

    simulator: str = param(
        "", help="Trained simulator: a `recrl train simulator` run directory or its model.pt."
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
    iterations: int = param(2000, help="Training iterations: one env step + updates_per_step gradient steps.")
    updates_per_step: int = param(1, help="Gradient steps per env step.")
    eval_steps: int = param(
        200, help="Env steps of the evaluation (exploration off) and of the calibrations."
    )
    eval_seed: int = param(1_000_003, help="Env seed of the evaluation users (far from training seeds).")
    window: int = param(10, help="Last training steps / updates averaged in the reported train metrics.")
    # -- policy backbone (§5.1)
    latent: int = param(16, help="Item/user latent width of the policy's encoders.")
    enc_dim: int = param(32, help="Policy encoding width (tokens 2x, state 3x).")
    n_heads: int = param(4, help="Attention heads of the policy's transformer.")
    ff_dim: int = param(64, help="Feed-forward width of the policy's transformer.")
    n_layers: int = param(3, help="Transformer layers of the policy.")
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
    # -- exploration (§5.1, §5.4)
    noise_std: float = param(0.1, help="σ of the Gaussian exploration noise on the hyper-action.")
    noise_clip: float = param(1.0, help="Clip of the exploration noise.")
    epsilon_initial: float = param(0.01, help="ε (random hyper-action for the batch) at the start.")
    epsilon_final: float = param(0.01, help="ε after epsilon_steps exploring steps.")
    epsilon_steps: int = param(2000, help="Steps of the linear ε schedule.")
    # -- agent specific (§5.3, §5.6)
    hyper_actor_coef: float = param(0.1, help="HAC: λ_h, weight of the alignment loss.")
    behavior_coef: float = param(1.0, help="HAC: weight of the supervised behaviour loss.")
    target_noise: float = param(0.2, help="TD3: target smoothing noise σ.")
    target_noise_clip: float = param(0.5, help="TD3: clip of the target smoothing noise.")
    policy_delay: int = param(2, help="TD3: critic updates per actor update.")
    entropy_coef: float = param(0.1, help="A2C: entropy bonus weight.")
    advantage_bias: float = param(0.0, help="A2C: bias added to the advantage.")
    advantage_clip: float = param(1.0, help="A2C: clip of the advantage.")
    # -- item text (recrl_cli/text): the projected text vector joins the policy's item kernel
    item_encoder: str = item_encoder_field()
    text_model: str = text_model_field()
    text_mode: str = text_mode_field()
    text_max_len: int = text_max_len_field()

    def __post_init__(self) -> None:
        check_text_options(self)
        for name in ("batch_users", "slate_size", "warmup_steps", "iterations", "eval_steps", "window"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"model.{name} must be a positive integer, got {value!r}")
        if self.updates_per_step < 0:
            raise ConfigError(f"model.updates_per_step must be >= 0, got {self.updates_per_step!r}")


@dataclass(frozen=True)
class DDPGRunConfig(AgentRunConfig):
    """DDPG's script uses actor lr 1e-4 (hac_kuaisim.md §5.6)."""

    actor_lr: float = param(1e-4, help="Actor Adam learning rate.")


CONFIGS: dict[str, type[AgentRunConfig]] = {"hac": AgentRunConfig, "ddpg": DDPGRunConfig, "td3": AgentRunConfig,
                                            "a2c": AgentRunConfig}  # fmt: skip


def load_simulator(source: str, device: torch.device):
    """The response model saved by ``recrl train simulator`` (a run directory or a model.pt) and its export."""
    from recrl_cli.sim.train import load_response_model
    from recrl_cli.training.checkpoint import load_checkpoint

    if not source:
        raise ConfigError("RL agents need a trained simulator: pass --simulator <run dir or model.pt>")
    path = Path(source)
    if path.is_dir():
        path = path / "model.pt"
    if not path.is_file():
        raise ConfigError(f"no simulator model at {source} (expected a run directory or its model.pt)")
    saved = load_checkpoint(path)
    if saved.get("algo") != "simulator":
        raise ConfigError(f"{source} is a {saved.get('algo')!r} model, not a trained simulator")
    return load_response_model(saved["exported"], device), saved["exported"]


class RLAgentAlgorithm:
    """An agent and its env as a recrl algorithm (stages / evaluate / state / export)."""

    def __init__(self, name: str, cfg: RunConfig, data: Any, device: torch.device) -> None:
        from recrl_cli.sim.data import KuaiRandData

        m = cfg.model
        if cfg.data.dataset != "kuairand" or not isinstance(data, KuaiRandData):
            raise ConfigError(
                f"{name} acts in the KuaiRand simulator: use a prepared KuaiRand dataset and --dataset kuairand"
            )
        model, exported = load_simulator(m.simulator, device)
        if exported.get("dataset_fingerprint") != data.fingerprint:
            raise ConfigError(f"the simulator {m.simulator} was trained on other data than {data.directory}")
        self.name, self.cfg = name, cfg
        try:
            self.env_cfg = EnvConfig(batch_users=m.batch_users, slate_size=m.slate_size,
                                     initial_temper=m.initial_temper, item_correlation=m.item_correlation,
                                     single_response=m.single_response, start_split=m.start_split,
                                     seed=cfg.train.seed)  # fmt: skip
            self.env = WholeSessionEnv.from_data(model, data, self.env_cfg)
            shared = {f.name for f in dataclasses.fields(AgentConfig)} & {
                f.name for f in dataclasses.fields(m)
            }
            self.agent_cfg = agent_config(name, **{k: getattr(m, k) for k in shared})
            self.loop_cfg = LoopConfig(warmup_steps=m.warmup_steps, iterations=m.iterations,
                                       updates_per_step=m.updates_per_step, eval_steps=m.eval_steps,
                                       eval_seed=m.eval_seed, window=m.window, seed=cfg.train.seed)  # fmt: skip
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        if uses_text(m):  # the policy's StateEncoder builds its item-text kernel from this factory
            from recrl_cli.text.attach import agent_text_factory

            model.item_text_factory = agent_text_factory(m, data.directory, device)
        self.agent = make_agent(name, self.env, self.agent_cfg, seed=cfg.train.seed)
        self.loop = AgentLoop(self.agent, self.env, self.loop_cfg)
        self.warmed = False
        self._result: AgentResult | None = None

    # -- training ----------------------------------------------------------------------------------------------
    def warm_up(self) -> None:
        """Reset the env and fill the buffer with ``warmup_steps`` random steps (again after a resume)."""
        if self.warmed:
            return
        self.loop.reset()
        for _ in range(self.loop_cfg.warmup_steps):
            self.loop.step(warm=True)
        self.warmed = True

    def update(self, idx: torch.Tensor) -> dict[str, float]:
        """One env step + its gradient steps (``idx`` only counts iterations)."""
        self.agent.train_mode()
        return {k: float(v) for k, v in self.loop.step(warm=False).items()}

    def stages(self) -> list[Stage]:
        return [Stage(name="interact", num_rows=self.loop_cfg.iterations, update=self.update, batch_size=1,
                      max_epochs=1, shuffle=False, on_epoch_start=self.warm_up)]  # fmt: skip

    # -- evaluation --------------------------------------------------------------------------------------------
    def result(self) -> AgentResult:
        if self._result is None:
            self._result = self.loop.result()
        return self._result

    def evaluate(self, split: str) -> dict[str, float]:
        """``test``: the evaluation of the agent and of the random / oracle calibrations; other splits: {}."""
        if split != "test":
            return {}
        r = self.result()
        out = {f"{who}/{k}": d[k] for who, d in (("agent", r.eval), ("random", r.random), ("oracle", r.oracle))
               for k in REPORTED}  # fmt: skip
        out["agent/gap_fraction"] = r.gap_fraction
        return out

    def extra_metrics(self) -> dict[str, float]:
        """The last training window (exploration on, as KuaiSim reports) and the mean recent losses."""
        r = self.result()
        return {**{f"train/agent/{k}": v for k, v in r.train.items()},
                **{f"train/loss/{k}": v for k, v in r.losses.items()}}  # fmt: skip

    def predict(self, features: torch.Tensor) -> torch.Tensor:
        raise ConfigError(f"{self.name} acts in the simulator; it does not score rows")

    # -- persistence -------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The agent only: the buffer and the env's users are not saved (see the module docstring)."""
        return {"agent": self.agent.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.agent.load_state_dict(state["agent"])

    def export(self) -> dict[str, Any]:
        return {
            "agent": self.name,
            "agent_config": dataclasses.asdict(self.agent_cfg),
            "env_config": dataclasses.asdict(self.env_cfg),
            "simulator": self.cfg.model.simulator,
            "state": self.agent.state_dict(),
        }


def agent_builder(name: str):
    """``AlgoSpec.build`` of agent ``name``."""

    def build(cfg: RunConfig, data: Any, device: torch.device) -> RLAgentAlgorithm:
        return RLAgentAlgorithm(name, cfg, data, device)

    return build


def load_agent_predictor(exported: dict[str, Any], device: torch.device):
    """``AlgoSpec.load_predictor``: agents have none."""
    raise ConfigError(
        f"{exported.get('agent', 'an RL agent')} acts in the simulator and does not score rows; "
        "its evaluation metrics are in the training run (eval/test/agent/...)"
    )
