"""``recrl train hac|ddpg|td3|a2c``: an RL agent trained in the whole-session env of a trained simulator.

The run's ``model`` section is an :class:`AgentRunConfig`: the simulator to act in (a ``recrl train simulator``
run directory or its ``model.pt``), the env, the loop sizes and the agent's hyperparameters. The loop of
:mod:`recrl_cli.agents.loop` runs as one trainer stage ``interact``: the warm-up (random hyper-actions, no
gradient steps) happens when the stage starts, then every trainer step is one env step + ``updates_per_step``
gradient steps (``train/interact/reward`` and the losses are logged per step). ``evaluate("test")`` runs the
separate evaluation once in its own env (``eval_users`` fresh users from ``eval_seed``, exploration off) and
reports ``<policy>/<metric>`` for the agent, random, popular and oracle (:mod:`recrl_cli.sim.evaluate`),
``agent/gap_fraction`` and ``agent/gap_vs_popular``; ``"val"`` is empty. :meth:`curves` is the learning curve.

Resume (``--resume``) is exact: the checkpoint holds the agent (weights, optimisers, generator, ε clock), the
replay buffer, the buffer sampler, the env's users (histories, temper, step counts) and generator, and the
training metrics so far, so an interrupted-and-resumed run ends with the metrics of an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from recrl_cli.agents import make_agent
from recrl_cli.agents.config import CONFIGS, AgentRunConfig, DDPGRunConfig
from recrl_cli.agents.loop import AgentLoop, AgentResult, LoopConfig
from recrl_cli.config.schema import RunConfig
from recrl_cli.errors import ConfigError, DataError
from recrl_cli.sim.config import EnvConfig
from recrl_cli.sim.environment import WholeSessionEnv
from recrl_cli.sim.evaluate import verdict
from recrl_cli.text.config import uses_text
from recrl_cli.training.checkpoint import LOAD_ERRORS, error_detail
from recrl_cli.training.trainer import Stage


def read_simulator(source: str, option: str = "--simulator") -> dict[str, Any]:
    """The checked export of a simulator saved by ``recrl train simulator`` (a run directory or its model.pt).

    Reads and validates only (cheap enough for a preflight); one-line errors for a missing, unsafe, malformed
    or other kind of model file.
    """
    from recrl_cli.algorithms.saved import describe, read_saved_model

    if not source:
        raise ConfigError(f"RL agents need a trained simulator: pass {option} <run dir or model.pt>")
    path = Path(source)
    if path.is_dir():
        path = path / "model.pt"
    if not path.is_file():
        raise ConfigError(f"no simulator model at {source} (expected a run directory or its model.pt)")
    saved = read_saved_model(path)
    if saved["algo"] != "simulator":
        raise ConfigError(
            f"{option} {source} is {describe(saved)}, not a trained simulator (recrl train simulator)"
        )
    return saved["exported"]


def load_simulator(source: str, device: torch.device, option: str = "--simulator"):
    """The response model saved by ``recrl train simulator`` (a run directory or a model.pt) and its export."""
    from recrl_cli.sim.train import load_response_model

    exported = read_simulator(source, option)
    try:
        return load_response_model(exported, device), exported
    except LOAD_ERRORS as exc:
        raise DataError(
            f"{option} {source}: the saved simulator cannot be rebuilt ({error_detail(exc)})"
        ) from None


class RLAgentAlgorithm:
    """An agent and its env as a recrl algorithm (stages / evaluate / state / export)."""

    def __init__(self, name: str, cfg: RunConfig, data: Any, device: torch.device) -> None:
        from recrl_cli.sim.data import KuaiRandData

        m = cfg.model
        if cfg.data.dataset != "kuairand" or not isinstance(data, KuaiRandData):
            raise ConfigError(
                f"{name} acts in the KuaiRand simulator: pass --data with a `recrl prepare kuairand` output"
            )
        model, exported = load_simulator(m.simulator, device)
        if exported.get("dataset_fingerprint") != data.fingerprint:
            raise ConfigError(f"the simulator {m.simulator} was trained on other data than {data.directory}")
        self.name, self.cfg = name, cfg
        try:
            self.env_cfg = EnvConfig(batch_users=m.batch_users, slate_size=m.slate_size,
                                     initial_temper=m.initial_temper, item_correlation=m.item_correlation,
                                     single_response=m.single_response, start_split=m.start_split,
                                     seed=cfg.train.seed, faithful=m.faithful,
                                     dropout_in_simulation=m.dropout_in_simulation,
                                     correlation_mean_over_dim=m.correlation_mean_over_dim)  # fmt: skip
            self.env = WholeSessionEnv.from_data(model, data, self.env_cfg)
            # Its own env: evaluating never disturbs the training users, and it can hold more users per step.
            self.eval_env = WholeSessionEnv.from_data(
                model, data, dataclasses.replace(self.env_cfg, batch_users=m.eval_users)
            )
            self.agent_cfg = m  # the agents read their hyperparameters from the run's model section
            self.loop_cfg = LoopConfig(warmup_steps=m.warmup_steps, iterations=m.iterations,
                                       updates_per_step=m.updates_per_step, eval_steps=m.eval_steps,
                                       eval_seed=m.eval_seed, eval_horizon=m.eval_horizon, window=m.window,
                                       seed=cfg.train.seed)  # fmt: skip
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        if uses_text(m):  # the policy's StateEncoder builds its item-text kernel from this factory
            from recrl_cli.text.attach import agent_text_factory

            model.item_text_factory = agent_text_factory(m, data.directory, device)
        self.agent = make_agent(name, self.env, self.agent_cfg, seed=cfg.train.seed)
        self.loop = AgentLoop(self.agent, self.env, self.loop_cfg, self.eval_env)
        self._result: AgentResult | None = None

    # -- training ----------------------------------------------------------------------------------------------
    def update(self, idx: torch.Tensor) -> dict[str, float]:
        """One env step + its gradient steps (``idx`` only counts iterations)."""
        self.agent.train_mode()
        return {k: float(v) for k, v in self.loop.step().items()}

    def stages(self) -> list[Stage]:
        """The warm-up when the stage starts (not again after a resume: the buffer is in the checkpoint), then
        one iteration per trainer step."""
        return [Stage(name="interact", num_rows=self.loop_cfg.iterations, update=self.update, batch_size=1,
                      max_epochs=1, shuffle=False, on_epoch_start=self.loop.warm_up, unit="iteration")]  # fmt: skip

    # -- evaluation --------------------------------------------------------------------------------------------
    def result(self) -> AgentResult:
        if self._result is None:
            self._result = self.loop.result()
        return self._result

    def evaluate(self, split: str) -> dict[str, float]:
        """``test``: the evaluation of the agent and of the random / popular / oracle policies; other splits: {}."""
        if split != "test":
            return {}
        return {f"{who}/{k}": v for who, d in self.result().policies.items() for k, v in d.items()}

    def notes(self) -> list[str]:
        """What the evaluation does not support: a policy that does not beat popular or random, a flat world."""
        return verdict(self.name, self.result().policies)

    def curves(self) -> dict[str, list[tuple[int, float]]]:
        """The learning curve per iteration bin (:meth:`recrl_cli.agents.loop.AgentLoop.curves`)."""
        return self.loop.curves()

    def extra_metrics(self) -> dict[str, float]:
        """The last training window (exploration on, as KuaiSim reports) and the mean recent losses."""
        r = self.result()
        return {**{f"train/agent/{k}": v for k, v in r.train.items()},
                **{f"train/loss/{k}": v for k, v in r.losses.items()}}  # fmt: skip

    def predict(self, features: torch.Tensor) -> torch.Tensor:
        raise ConfigError(f"{self.name} acts in the simulator; it does not score rows")

    # -- persistence -------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The agent, the loop (replay buffer, sampler, env users and generator, metrics) and the warm-up flag:
        a run resumed from it continues step for step."""
        return {"agent": self.agent.state_dict(), "loop": self.loop.state_dict(),
                "warmed": self.loop.interaction.warmed}  # fmt: skip

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.agent.load_state_dict(state["agent"])
        self.loop.load_state_dict(state["loop"])
        self.loop.interaction.warmed = state["warmed"]

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


__all__ = [
    "CONFIGS",
    "AgentRunConfig",
    "DDPGRunConfig",
    "RLAgentAlgorithm",
    "agent_builder",
    "load_agent_predictor",
]
