"""What every agent shares: the hyper-action policy, acting (top-K of the explored hyper-action), exploration
schedule, optimiser helpers and checkpoint state. Subclasses implement :meth:`HyperActorAgent.update`.

Shapes: B users, A hyper-action, K slate, N candidates.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from recrl_cli.agents.buffer import Batch
from recrl_cli.agents.config import AgentRunConfig, agent_switches
from recrl_cli.agents.exploration import LinearSchedule, perturb
from recrl_cli.agents.networks import HyperPolicy, sample_k, top_k
from recrl_cli.sim.environment import Observation, WholeSessionEnv


@dataclass(frozen=True)
class Action:
    """slate LongTensor [B, K] (candidate indices, what the env takes) and hyper FloatTensor [B, A] (the
    executed hyper-action, what the replay buffer stores)."""

    slate: torch.Tensor
    hyper: torch.Tensor


def adam(module_params, lr: float, decay: float) -> torch.optim.Adam:
    return torch.optim.Adam(module_params, lr=lr, weight_decay=decay)


def step(optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> None:
    """zero_grad, backward, step: one optimiser update of ``loss``."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def gradients(loss: torch.Tensor, params: list[torch.Tensor], retain_graph: bool = False) -> list:
    """d loss / d params without touching ``.grad`` (None where a parameter does not reach the loss), so two
    losses of one forward can feed two optimisers over the same parameters."""
    return list(torch.autograd.grad(loss, params, retain_graph=retain_graph, allow_unused=True))


def step_with(optimizer: torch.optim.Optimizer, params: list[torch.Tensor], grads: list) -> None:
    """One update of ``optimizer`` with the given gradients of ``params`` (Adam skips a None gradient)."""
    for p, g in zip(params, grads, strict=True):
        p.grad = g
    optimizer.step()
    for p in params:
        p.grad = None


class HyperActorAgent:
    """Base agent. ``seed`` fixes the parameter initialisation (without touching the global RNG) and the
    agent's own generator (exploration noise, TD3 target smoothing)."""

    name = "base"

    def __init__(self, env: WholeSessionEnv, cfg: AgentRunConfig, seed: int = 0) -> None:
        self.cfg, self.device, self.slate_size = cfg, env.device, env.slate
        self.switches = agent_switches(cfg)  # the faithful switches after the preset
        self.generator = torch.Generator(self.device).manual_seed(seed)
        self.schedule = LinearSchedule(cfg.epsilon_initial, cfg.epsilon_final, cfg.epsilon_steps)
        self.explore_steps = 0  # exploring act() calls so far: the ε schedule's clock
        self.updates = 0
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.actor = HyperPolicy(env.model, cfg).to(self.device)
            self.build(env)
        self.actor_target = copy.deepcopy(self.actor).eval()

    def build(self, env: WholeSessionEnv) -> None:
        """Create the critics and optimisers (called under the agent's seed)."""
        raise NotImplementedError

    # -- acting ------------------------------------------------------------------------------------------------
    def explore(self, hyper: torch.Tensor, epsilon: float) -> torch.Tensor:
        """The explored hyper-action [B, A] (Gaussian noise, random batch with probability ε)."""
        return self.noise(hyper, self.cfg.noise_std, epsilon)

    def noise(self, hyper: torch.Tensor, std: float | torch.Tensor, epsilon: float) -> torch.Tensor:
        """``hyper`` [B, A] + the policy's exploration noise (Gaussian, or U[0, σ) with ``uniform_noise``)."""
        return perturb(
            hyper, std, self.cfg.noise_clip, epsilon, self.generator, self.switches["uniform_noise"]
        )

    @torch.no_grad()
    def select(self, obs: Observation, explore: bool, epsilon: float | None = None) -> Action:
        """The action for B users. The actor runs in eval mode (no dropout), so with ``explore=False`` the
        action is a deterministic function of the observation. ``epsilon`` overrides the schedule (warm-up: 1)."""
        self.actor.eval()
        table, _, hyper = self.actor(obs)
        if explore:
            eps = self.schedule.value(self.explore_steps) if epsilon is None else epsilon
            hyper = self.explore(hyper, eps)
            self.explore_steps += 1
            if self.cfg.effect_action == "sample":  # exploration in item space as well (HAC §3.3)
                slate = sample_k(hyper, table, self.slate_size, self.cfg.sample_temperature, self.generator)
                return Action(slate=slate, hyper=hyper)
        return Action(slate=top_k(hyper, table, self.slate_size), hyper=hyper)

    def act(self, obs: Observation, explore: bool) -> torch.Tensor:
        """Slate LongTensor [B, K] of candidate indices for B users."""
        return self.select(obs, explore).slate

    # -- learning ----------------------------------------------------------------------------------------------
    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        """One gradient step on a sampled batch; returns the detached losses (0-dim tensors, no device sync)."""
        raise NotImplementedError

    def modules(self) -> dict[str, nn.Module]:
        """Every network to checkpoint, by name (targets included)."""
        return {"actor": self.actor, "actor_target": self.actor_target}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        raise NotImplementedError

    def train_mode(self) -> None:
        """Online networks in train mode (dropout on, as KuaiSim trains); targets stay in eval mode."""
        for name, module in self.modules().items():
            module.train(not name.endswith("_target"))

    def parameters(self) -> list[torch.Tensor]:
        """Every learned parameter of the online networks (what an update may move)."""
        return [p for n, m in self.modules().items() if not n.endswith("_target") for p in m.parameters()]

    def state_dict(self) -> dict[str, Any]:
        return {"modules": {n: m.state_dict() for n, m in self.modules().items()},
                "optimizers": {n: o.state_dict() for n, o in self.optimizers().items()},
                "generator": self.generator.get_state(), "explore_steps": self.explore_steps,
                "updates": self.updates}  # fmt: skip

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for n, m in self.modules().items():
            m.load_state_dict(state["modules"][n])
        for n, o in self.optimizers().items():
            o.load_state_dict(state["optimizers"][n])
        self.generator.set_state(state["generator"])
        self.explore_steps, self.updates = state["explore_steps"], state["updates"]
