"""``recrl train unifiedrl`` and the fusion baselines ``recrl train mtf-es|mtf-ddpg|mtf-td3bc|mtf-iql|mtf-bcq|mtf-cql``.

One run = the paper's whole offline protocol on the simulator (unifiedrl_hrlrec.md A4 reference algorithm, A6):

1. stage ``behaviour``: CEM tunes the ES behaviour policy μ_bp⁰ against the fusion env (one step = one generation);
2. per round r (R = ``rounds`` for UnifiedRL with PTM, else 1), stage ``collect<r>`` logs ``collect_steps / R``
   requests per env row around the round's centre (μ_bp⁰, then the policy learned in round r − 1) and writes them
   to ``<logs_dir>/<run>/round<r>.parquet``; stage ``train<r>`` runs ``iterations / R`` gradient steps of the
   offline learner on all the logs so far (cumulative, warm-started);
3. ``evaluate("test")``: simulated A/B of the learned policy (``policy/…``) against ES (``es/…``) with common
   random numbers, MTF-GAUC on a μ_bp⁰ test log, NCIS on a uniform-explored log, and the premise check.

Data per learner (A5): UnifiedRL logs uniform ±b (D3 with PTM, D2 without); the baselines log Gaussian N(0, σ²)
(D1). ``--noise`` overrides. ``mtf-es`` stops after stage 1: its ``policy`` is μ_bp⁰ itself.

Resume restores CEM, the learner and every log collected so far, but not the env's users (as the RL agents).
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any

import torch

from recrl_cli.agents.algorithm import load_simulator
from recrl_cli.config.schema import RunConfig
from recrl_cli.errors import ConfigError
from recrl_cli.evaluation.stats import mean_ci
from recrl_cli.mtf.collect import Logs, collect, concat, to_store, write_logs
from recrl_cli.mtf.env import FusionEnv
from recrl_cli.mtf.evaluate import AB_METRICS, ab_sessions, log_mtf_gauc, log_ncis, premise
from recrl_cli.mtf.metrics import paired_pct_change
from recrl_cli.mtf.policies import CEM
from recrl_cli.sim.config import EnvConfig
from recrl_cli.sim.environment import WholeSessionEnv
from recrl_cli.training.trainer import Stage

#: registry name -> offline learner (``recrl_cli.offline.registry``); None = ES only.
LEARNER_OF = {"unifiedrl": "unifiedrl", "mtf-es": None, "mtf-ddpg": "ddpg", "mtf-td3bc": "td3bc",
              "mtf-iql": "iql", "mtf-bcq": "bcq", "mtf-cql": "cql_sac"}  # fmt: skip
REWARD_WEIGHTS = (1.0, 1.0)  # watch part + rest part: the baselines' scalar reward, UnifiedRL's set weights


def learner_overrides(learner: str, m: Any) -> dict[str, Any]:
    """The run config's learner fields mapped onto the learner's own config (only the fields it has)."""
    from recrl_cli.offline.registry import get_learner

    names = {f.name for f in dataclasses.fields(get_learner(learner).config)}
    wanted = {"gamma": m.gamma, "batch_size": m.batch_size, "actor_hidden": m.hidden, "critic_hidden": m.hidden,
              "hidden": m.hidden, "critics": m.critics, "penalty": m.penalty, "eta": m.eta, "beta": m.beta,
              "uncertainty": m.uncertainty, "soft_rate": m.soft_rate, "target_every": m.target_every,
              "actor_lr": m.actor_lr, "critic_lr": m.critic_lr}  # fmt: skip
    for k in ("actor_lr", "critic_lr"):  # none: the learner's own default
        if wanted[k] is None:
            wanted.pop(k)
    if learner != "unifiedrl":  # the baselines keep their own target-update schedules
        for k in ("critics", "penalty", "eta", "beta", "uncertainty", "soft_rate", "target_every"):
            wanted.pop(k)
    return {k: v for k, v in wanted.items() if k in names}


class MTFAlgorithm:
    """A fusion run as a recrl algorithm (stages / evaluate / state / export); see the module docstring."""

    def __init__(self, name: str, cfg: RunConfig, data: Any, device: torch.device) -> None:
        from recrl_cli.offline.registry import build_learner
        from recrl_cli.sim.data import KuaiRandData

        m = cfg.model
        if cfg.data.dataset != "kuairand" or not isinstance(data, KuaiRandData):
            raise ConfigError(
                f"{name} fuses scores in the KuaiRand simulator: use a prepared KuaiRand dataset"
            )
        self.model, exported = load_simulator(m.simulator, device)
        if exported.get("dataset_fingerprint") != data.fingerprint:
            raise ConfigError(f"the simulator {m.simulator} was trained on other data than {data.directory}")
        if m.ranker:
            self.ranker, r_exp = load_simulator(m.ranker, device, option="--ranker")
            if r_exp.get("dataset_fingerprint") != data.fingerprint:
                raise ConfigError(f"the ranker {m.ranker} was trained on other data than {data.directory}")
        else:
            self.ranker = self.model
        self.name, self.cfg, self.m, self.data, self.device = name, cfg, m, data, device
        self.weights = tuple(m.weights)
        if m.weights_from == "data":
            from recrl_cli.mtf.weights import fit_reward_weights

            self.weights = fit_reward_weights(data.rows, data.splits["train"])
        self.learner_name = LEARNER_OF[name]
        self.noise = m.noise if m.noise != "auto" else ("uniform" if name == "unifiedrl" else "gaussian")
        self.width = m.bounds if self.noise == "uniform" else m.gaussian_std
        self.rounds = m.rounds if (name == "unifiedrl" and m.ptm) else 1
        seed = cfg.train.seed
        try:
            self.env = self.make_env(seed)
            self.cem = CEM(self.make_env(seed + 101), population=m.cem_population, steps=m.cem_steps, elite=0.25,
                           init_std=0.5, scale=m.action_scale,
                           generator=torch.Generator(device).manual_seed(seed + 202))  # fmt: skip
            self.learner = None
            if self.learner_name is not None:
                self.learner = build_learner(self.learner_name, self.env.state_dim, self.env.action_dim,
                                             REWARD_WEIGHTS, device, seed, **learner_overrides(self.learner_name, m))  # fmt: skip
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        self.generator = torch.Generator(device).manual_seed(seed + 303)
        self.mu_bp0 = self.cem.policy()
        self.logs: list[Logs] = []
        self.store = None
        self.center: Any = None  # the frozen policy the next round explores around
        self._eval: dict[str, float] | None = None

    # -- env ---------------------------------------------------------------------------------------------------
    def make_env(self, seed: int) -> FusionEnv:
        m = self.m
        env_cfg = EnvConfig(batch_users=m.batch_users, slate_size=m.slate_size, initial_temper=m.initial_temper,
                            item_correlation=m.item_correlation, seed=seed)  # fmt: skip
        sim = WholeSessionEnv.from_data(self.model, self.data, env_cfg)
        return FusionEnv(
            sim, self.ranker, retrieved=m.retrieved, random=m.random_candidates, weights=self.weights
        )

    def log_path(self, stem: str) -> Path:
        run = f"{self.name}-seed{self.cfg.train.seed}-{self.noise}-b{self.width:g}"
        return Path(self.m.logs_dir) / run / f"{stem}.parquet"

    # -- stages ------------------------------------------------------------------------------------------------
    def cem_step(self, idx: torch.Tensor) -> dict[str, float]:
        out = self.cem.iterate()
        self.mu_bp0 = self.cem.policy()
        return out

    def collect_step(self, r: int) -> dict[str, float]:
        center = self.mu_bp0 if r == 0 or self.center is None else self.center.act
        steps = max(1, self.m.collect_steps // self.rounds)
        logs = collect(self.env, center, noise=self.noise, width=self.width, bound=self.m.bounds, steps=steps,
                       generator=self.generator, round_id=r)  # fmt: skip
        write_logs(logs, self.log_path(f"round{r}"), self.noise)
        self.logs.append(logs)
        self.store = to_store(concat(self.logs))
        return {"reward": float(logs.reward.sum(1).mean()), "rows": float(len(logs))}

    def train_step(self, idx: torch.Tensor) -> dict[str, float]:
        assert self.learner is not None and self.store is not None
        return self.learner.update(self.store.sample(self.m.batch_size, self.generator))

    def end_round(self) -> None:
        self.center = copy.deepcopy(self.learner)

    def stages(self) -> list[Stage]:
        out = [Stage(name="behaviour", num_rows=self.m.cem_iterations, update=self.cem_step, batch_size=1,
                     max_epochs=1, shuffle=False)]  # fmt: skip
        if self.learner is None:
            return out
        per_round = max(1, self.m.iterations // self.rounds)
        for r in range(self.rounds):
            out.append(Stage(name=f"collect{r}", num_rows=1, update=lambda idx, r=r: self.collect_step(r),
                             batch_size=1, max_epochs=1, shuffle=False))  # fmt: skip
            out.append(Stage(name=f"train{r}", num_rows=per_round, update=self.train_step, batch_size=1,
                             max_epochs=1, shuffle=False, on_end=self.end_round))  # fmt: skip
        return out

    # -- evaluation --------------------------------------------------------------------------------------------
    def policies(self) -> dict[str, Any]:
        return {"es": self.mu_bp0, "policy": self.mu_bp0 if self.learner is None else self.learner.act}

    def evaluate(self, split: str) -> dict[str, float]:
        if split != "test":
            return {}
        if self._eval is None:
            self._eval = self._evaluate()
        return self._eval

    def _evaluate(self) -> dict[str, float]:
        m = self.m
        seeds = [m.eval_seed + i for i in range(m.eval_waves)]
        out: dict[str, float] = {"ranker_is_simulator": float(self.ranker is self.model)}
        names = ("valid_consumption", "watch_minute", "like", "follow", "comment", "forward", "hate")
        out.update({f"reward_weight/{k}": w for k, w in zip(names, self.weights, strict=True)})
        ab = {who: ab_sessions(self.make_env, pol, seeds) for who, pol in self.policies().items()}
        test = collect(self.make_env(m.eval_seed + 50_000), self.mu_bp0, noise=None, width=0.0, bound=m.bounds,
                       steps=m.test_steps, generator=self.generator)  # fmt: skip
        explore_log = collect(self.make_env(m.eval_seed + 60_000), self.mu_bp0, noise="uniform", width=m.bounds,
                              bound=m.bounds, steps=m.test_steps, generator=self.generator)  # fmt: skip
        write_logs(test, self.log_path("test"), "none")
        write_logs(explore_log, self.log_path("ncis"), "uniform")
        kernel = m.ncis_kernel or m.bounds
        out.update(
            {"ncis/cap": m.ncis_cap, "ncis/kernel": kernel, "ab/sessions": float(len(ab["es"]["depth"]))}
        )
        for who, pol in self.policies().items():
            for k in AB_METRICS:
                mean, ci = mean_ci(ab[who][k].cpu().numpy())
                out[f"{who}/{k}"], out[f"{who}/{k}_ci"] = mean, ci
            out[f"{who}/mtf_gauc"] = log_mtf_gauc(test, pol, self.env.action_map, self.env.weights)
            out[f"{who}/mtf_gauc_by_request"] = log_mtf_gauc(
                test, pol, self.env.action_map, self.env.weights, by="request"
            )
            for k, v in log_ncis(explore_log, pol, batch=m.batch_users, noise="uniform", width=m.bounds,
                                 kernel=kernel, cap=m.ncis_cap).items():  # fmt: skip
                out[f"{who}/{k}"] = v
        for k in AB_METRICS:
            out[f"policy/{k}_change_pct"], out[f"policy/{k}_change_ci"] = paired_pct_change(
                ab["policy"][k], ab["es"][k]
            )
        out.update({f"policy/{k}": v for k, v in premise(test, self.policies()["policy"], m.bounds).items()})
        return out

    def predict(self, features: torch.Tensor) -> torch.Tensor:
        raise ConfigError(f"{self.name} fuses scores in the simulator; it does not score rows")

    # -- persistence -------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"cem": {"mean": self.cem.mean, "std": self.cem.std},
                "learner": None if self.learner is None else self.learner.state_dict(),
                "center": None if self.center is None else self.center.state_dict(),
                "logs": [dataclasses.asdict(x) for x in self.logs]}  # fmt: skip

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.cem.mean, self.cem.std = state["cem"]["mean"], state["cem"]["std"]
        self.mu_bp0 = self.cem.policy()
        if self.learner is not None and state["learner"] is not None:
            self.learner.load_state_dict(state["learner"])
        if state["center"] is not None and self.learner is not None:
            self.center = copy.deepcopy(self.learner)
            self.center.load_state_dict(state["center"])
        self.logs = [Logs(**x) for x in state["logs"]]
        self.store = to_store(concat(self.logs)) if self.logs else None

    def export(self) -> dict[str, Any]:
        return {"algo": self.name, "learner": self.learner_name, "config": dataclasses.asdict(self.m),
                "mu_bp": {"theta": self.mu_bp0.theta, "scale": self.mu_bp0.scale},
                "state": None if self.learner is None else self.learner.state_dict()}  # fmt: skip


def mtf_builder(name: str):
    def build(cfg: RunConfig, data: Any, device: torch.device) -> MTFAlgorithm:
        return MTFAlgorithm(name, cfg, data, device)

    return build


def load_mtf_predictor(exported: dict[str, Any], device: torch.device):
    raise ConfigError(f"{exported.get('algo', 'a fusion policy')} acts in the simulator and does not score rows; "
                      "its evaluation metrics are in the training run (eval/test/policy/...)")  # fmt: skip
