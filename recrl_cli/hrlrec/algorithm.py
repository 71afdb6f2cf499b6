"""``recrl train hrlrec``: HRL-Rec (or a baseline, ``--variant``) trained offline on logged lists and/or online in
the KuaiRand simulator, evaluated online against the baselines and offline on held-out logged lists.

Stages (``--mode``): ``offline`` (epochs over the logged train lists, batches of ``batch_size`` lists) and
``interact`` (``warmup_steps`` random lists fill the replay buffer when the stage starts, then every trainer
step is one env step of B lists with exploration + ``updates_per_step`` gradient steps on buffered lists: the
agents' :class:`~recrl_cli.agents.interaction.Interaction`, with this class as its learner).
``quota`` and ``single-ranker`` have no stage: they do not learn.

``evaluate("test")``: ``eval_days × day_steps`` env steps from ``eval_seed`` (fresh users, the same ones for every
policy) for the run's policy (``agent/<metric>``), the baselines ``quota/``, ``single-ranker/``, ``random/`` and the
simulator references ``popular/`` and ``oracle/`` with ``agent/gap_fraction``, ``agent/gap_vs_popular`` and
``popular/gap_fraction`` on the list reward (:mod:`recrl_cli.hrlrec.online`; :meth:`notes` says when the policy
does not beat popular);
for learning variants also ``offline/item_auc`` and ``offline/channel_acc`` on held-out logged lists. Metric
definitions: :mod:`recrl_cli.hrlrec.metrics`; the channel shares are logged as ``eval/shares/<policy>/<channel>``. Resume restores the agent, not the buffer (unlike the RL agents).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from recrl_cli.agents.algorithm import load_simulator
from recrl_cli.agents.buffer import Batch
from recrl_cli.agents.interaction import Interaction, Transition
from recrl_cli.config.schema import RunConfig
from recrl_cli.errors import ConfigError
from recrl_cli.hrlrec.agent import HRLAgent, ListBatch
from recrl_cli.hrlrec.channels import build_channels
from recrl_cli.hrlrec.logged import LoggedLists, list_starts, offline_evaluate
from recrl_cli.hrlrec.online import (
    ListScorer,
    evaluate_lists,
    fixed_policy,
    list_verdict,
    quota_list,
    random_policy,
    single_ranker_list,
)
from recrl_cli.sim.config import EnvConfig
from recrl_cli.sim.environment import Observation, StepResult, WholeSessionEnv
from recrl_cli.training.trainer import Stage


class HRLRecAlgorithm:
    """HRL-Rec, its env, channels and logged lists as a recrl algorithm."""

    def __init__(self, cfg: RunConfig, data: Any, device: torch.device) -> None:
        from recrl_cli.sim.data import KuaiRandData

        m = cfg.model
        if cfg.data.dataset != "kuairand" or not isinstance(data, KuaiRandData):
            raise ConfigError("hrlrec acts in the KuaiRand simulator: use a prepared KuaiRand dataset")
        model, exported = load_simulator(m.simulator, device)
        if exported.get("dataset_fingerprint") != data.fingerprint:
            raise ConfigError(f"the simulator {m.simulator} was trained on other data than {data.directory}")
        if m.list_length > model.cfg.history_length:
            raise ConfigError(f"model.list_length {m.list_length} exceeds the simulator's history length "
                              f"{model.cfg.history_length}")  # fmt: skip
        self.cfg, self.m = cfg, m
        self.channels = build_channels(data, m.channel_by, m.max_channels, m.per_channel, m.prior_strength)
        self.scorer = ListScorer(data.items.tags, max(data.items.tag_cardinality, int(data.items.tags.max()) + 1),
                                 self.channels, m.reward_weights(), m.novelty_window)  # fmt: skip
        self.env = WholeSessionEnv.from_data(model, data, EnvConfig(
            batch_users=m.batch_users, slate_size=m.list_length, initial_temper=m.initial_temper,
            item_correlation=m.item_correlation, start_split=m.start_split, seed=cfg.train.seed))  # fmt: skip
        hist, same = model.cfg.history_length, model.cfg.same_request
        train = list_starts(data.rows, data.splits["train"], m.list_length)
        held = torch.cat([data.splits["val"], data.splits["test"]]).sort().values
        self.train_lists = LoggedLists(data.rows, train, m.list_length, hist, same)
        self.test_lists = LoggedLists(
            data.rows, list_starts(data.rows, held, m.list_length), m.list_length, hist, same
        )
        self.learns = m.variant in ("hrlrec", "flat-ddpg")
        self.agent = (HRLAgent(model, data.items, self.channels, m, cfg.train.seed, m.variant == "hrlrec")
                      if self.learns else None)  # fmt: skip
        if self.learns and m.mode != "online" and len(self.train_lists) == 0:
            raise ConfigError(f"no logged train list of {m.list_length} consecutive rows; use --mode online")
        self.interaction = Interaction(self.env, self, buffer_size=m.buffer_size, batch_size=m.batch_size,
                                       updates_per_step=m.updates_per_step, seed=cfg.train.seed)  # fmt: skip
        self.explorer = torch.Generator(device).manual_seed(cfg.train.seed + 1)  # the warm-up's random lists
        self._eval: dict[str, float] | None = None
        self._results: dict[str, dict[str, float]] | None = None
        self.curve_rows: list[dict[str, float]] = []  # every interaction's list reward, CTR and losses

    # -- the Learner of the interaction -----------------------------------------------------------------------
    def act(self, obs: Observation, warm: bool) -> tuple[torch.Tensor, None]:
        """One list of T candidate indices per user row [B, T]: random lists in warm-up, else explored."""
        if warm:
            return random_policy(self.channels, self.m.list_length, self.explorer)(obs), None
        return self.agent.act(obs, explore=True)[0], None

    def record(self, obs: Observation, items: torch.Tensor, chosen: None, result: StepResult,
               warm: bool) -> Transition:  # fmt: skip
        """The buffer's float column carries the per-position rewards [B, 2T] (low, high)."""
        rewards, _ = self.scorer.step_rewards(obs, items, result)
        total = rewards.high.sum(1)
        return Transition(column=torch.cat([rewards.low, rewards.high], 1), reward=total,
                          logged={"list_reward": total.mean(), "ctr": rewards.click.mean()})  # fmt: skip

    def learn(self, b: Batch) -> dict[str, torch.Tensor]:
        t = self.m.list_length
        return self.agent.update(ListBatch(obs=b.obs, items=b.slate, channels=self.channels.channel_of[b.slate],
                                           r_low=b.hyper[:, :t], r_high=b.hyper[:, t:],
                                           click=b.responses[..., 0]))  # fmt: skip

    # -- training ----------------------------------------------------------------------------------------------
    def _offline(self, idx: torch.Tensor) -> dict[str, float]:
        return {k: float(v) for k, v in self.agent.update(self.train_lists.batch(idx, self.scorer)).items()}

    def warm_up(self) -> None:
        """The warm-up when the interaction stage starts; again after a resume (the buffer is not saved)."""
        self.interaction.warm_up(self.m.warmup_steps)

    def _interact(self, idx: torch.Tensor) -> dict[str, float]:
        logged, losses = self.interaction.step(warm=False)
        row = {k: float(v) for k, v in {**logged, **losses}.items()}
        self.curve_rows.append(row)
        return row

    def curves(self) -> dict[str, list[tuple[int, float]]]:
        """The learning curve of the interaction stage: list reward, CTR and losses per iteration bin (the
        iterations run in this process: a resumed run's curve starts at the resume)."""
        from recrl_cli.reporting import bin_curve

        return bin_curve(self.curve_rows)

    def stages(self) -> list[Stage]:
        if not self.learns:
            return []
        m, stages = self.m, []
        if m.mode in ("offline", "offline+online") and m.offline_epochs > 0:
            stages.append(Stage(name="offline", num_rows=len(self.train_lists), update=self._offline,
                                batch_size=m.batch_size, max_epochs=m.offline_epochs))  # fmt: skip
        if m.mode in ("online", "offline+online") and m.iterations > 0:
            stages.append(Stage(name="interact", num_rows=m.iterations, update=self._interact, batch_size=1,
                                max_epochs=1, shuffle=False, on_epoch_start=self.warm_up, unit="iteration"))  # fmt: skip
        return stages

    # -- evaluation --------------------------------------------------------------------------------------------
    def policies(self) -> dict[str, Any]:
        """The run's policy (``agent``) and the rule baselines; :func:`evaluate_lists` adds the references."""
        t = self.m.list_length
        quota = fixed_policy(quota_list(self.channels, t))
        single = fixed_policy(single_ranker_list(self.channels, t))
        agent = {"quota": quota, "single-ranker": single}.get(self.m.variant)
        if agent is None:
            agent = lambda obs: self.agent.act(obs, explore=False)[0]  # noqa: E731
        return {"agent": agent, "quota": quota, "single-ranker": single}

    def results(self) -> dict[str, dict[str, float]]:
        """{policy: list metrics} of the online evaluation (run once): agent, quota, single-ranker, random,
        popular, oracle on the users of ``eval_seed`` (:func:`recrl_cli.hrlrec.online.evaluate_lists`)."""
        if self._results is None:
            m = self.m
            self._results = evaluate_lists(self.env, self.policies(), self.scorer, m.eval_days * m.day_steps,
                                           m.day_steps, m.eval_seed)  # fmt: skip
            self.interaction.obs = None  # the env was reset by the evaluation
        return self._results

    def notes(self) -> list[str]:
        """What the online evaluation does not support: a policy that does not beat popular or random on the
        list reward, a world without headroom (:func:`recrl_cli.hrlrec.online.list_verdict`)."""
        return list_verdict(self.m.variant, self.results())

    def evaluate(self, split: str) -> dict[str, float]:
        if split != "test":
            return {}
        if self._eval is None:
            out = {}
            for who, res in self.results().items():
                # Shares go to extra_metrics (one column per channel would swamp the printed table).
                out.update({(f"shares/{who}/{k[6:]}" if k.startswith("share/") else f"{who}/{k}"): v
                            for k, v in res.items()})  # fmt: skip
            if self.learns:
                off = offline_evaluate(self.agent, self.test_lists, self.scorer)
                out.update({f"offline/{k}": v for k, v in off.items()})
            self._eval = out
        return {k: v for k, v in self._eval.items() if not k.startswith("shares/")}

    def extra_metrics(self) -> dict[str, float]:
        """Channel shares of every evaluated policy: ``shares/<policy>/<channel>``."""
        self.evaluate("test")
        return {k: v for k, v in self._eval.items() if k.startswith("shares/")}

    def predict(self, features: torch.Tensor) -> torch.Tensor:
        raise ConfigError("hrlrec builds lists in the simulator; it does not score rows")

    # -- persistence -------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"agent": self.agent.state_dict() if self.agent is not None else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.agent is not None:
            self.agent.load_state_dict(state["agent"])

    def export(self) -> dict[str, Any]:
        return {"agent": "hrlrec", "variant": self.m.variant, "config": dataclasses.asdict(self.m),
                "channels": self.channels.names, "candidates": self.channels.candidates.cpu(),
                "state": self.agent.state_dict() if self.agent is not None else None}  # fmt: skip


def build_hrlrec(cfg: RunConfig, data: Any, device: torch.device) -> HRLRecAlgorithm:
    """``AlgoSpec.build``."""
    return HRLRecAlgorithm(cfg, data, device)


def load_hrlrec_predictor(exported: dict[str, Any], device: torch.device):
    """``AlgoSpec.load_predictor``: list policies do not score rows."""
    raise ConfigError("hrlrec builds lists in the simulator and does not score rows; its metrics are in the "
                      "training run (eval/test/agent/...)")  # fmt: skip
