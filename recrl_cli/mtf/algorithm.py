"""``recrl train unifiedrl`` and the fusion baselines ``recrl train mtf-es|mtf-ddpg|mtf-td3bc|mtf-iql|mtf-bcq|mtf-cql``.

One run = the paper's whole offline protocol on the simulator (unifiedrl_hrlrec.md A4 reference algorithm, A6):

1. stage ``behaviour``: CEM tunes the ES behaviour policy μ_bp⁰ against the fusion env (one step = one generation);
2. per round r (R = ``rounds`` for UnifiedRL with PTM, else 1), stage ``collect<r>`` logs ``collect_steps / R``
   requests per env row around the round's centre (μ_bp⁰, then the last policy kept) and writes them to
   ``<logs_dir>/<run>/round<r>.parquet`` (``logs_dir`` empty: ``<run dir>/mtf-logs``); stage ``train<r>`` runs
   ``iterations / R`` gradient steps of the offline learner on all the logs so far (cumulative, warm-started).
   At the end of a PTM round the guard (``ptm_guard``) keeps the round's policy as the next centre only if a
   paired validation A/B on held-out users finds it not worse than the current centre (:meth:`end_round`);
   the run's policy is the last one kept;
3. ``evaluate("test")``: simulated A/B of the learned policy (``policy/…``) and of one fixed fusion
   (``fixed/…``) against ES (``es/…``) with common random numbers (``eval_waves`` × ``eval_users`` sessions,
   paired % change with a delta-method CI), MTF-GAUC on a μ_bp⁰ test log, NCIS on a uniform-explored log, and
   the premise check.

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
from recrl_cli.errors import ConfigError, DataError
from recrl_cli.evaluation.stats import mean_ci
from recrl_cli.mtf.collect import Logs, collect, concat, to_store, write_logs
from recrl_cli.mtf.env import FusionEnv
from recrl_cli.mtf.evaluate import AB_METRICS, ab_sessions, log_mtf_gauc, log_ncis, premise
from recrl_cli.mtf.metrics import paired_pct_change, sessions_for_ci, unpaired_pct_change
from recrl_cli.mtf.policies import CEM
from recrl_cli.mtf.ranker import BUILT_IN, built_in_ranker
from recrl_cli.sim.config import EnvConfig
from recrl_cli.sim.environment import WholeSessionEnv
from recrl_cli.training.checkpoint import LOAD_ERRORS, error_detail
from recrl_cli.training.trainer import Stage

#: registry name -> offline learner (``recrl_cli.offline.registry``); None = ES only.
LEARNER_OF = {"unifiedrl": "unifiedrl", "mtf-es": None, "mtf-ddpg": "ddpg", "mtf-td3bc": "td3bc",
              "mtf-iql": "iql", "mtf-bcq": "bcq", "mtf-cql": "cql_sac"}  # fmt: skip
PAPER_UPDATES, PAPER_TARGET_EVERY = 300_000, 15  # the paper's budget and its L (ω = 0.08 every 15 updates)
REWARD_WEIGHTS = (1.0, 1.0)  # watch part + rest part: the baselines' scalar reward, UnifiedRL's set weights


def target_every(m: Any) -> int:
    """UnifiedRL's L: as given, or (0) the paper's 15 scaled to the budget, max(1, round(15·iterations/300k)).

    The paper's ω = 0.08 every 15 updates gives the targets a time constant of 15/0.08 ≈ 190 updates, 0.06 % of
    its 300k. At recrl's quick 300 updates (60 per PTM round) the same schedule makes 4 soft updates a round and
    the targets cover only 1 − 0.92⁴ ≈ 28 % of the way to the critics; with L scaled (1 below 20k updates) a
    round of 60 updates covers 1 − 0.92⁶⁰ ≈ 99 %, and the paper preset keeps L = 15.
    """
    if m.target_every:
        return int(m.target_every)
    return max(1, round(PAPER_TARGET_EVERY * m.iterations / PAPER_UPDATES))


def learner_overrides(learner: str, m: Any) -> dict[str, Any]:
    """The run config's learner fields mapped onto the learner's own config (only the fields it has)."""
    from recrl_cli.offline.registry import get_learner

    names = {f.name for f in dataclasses.fields(get_learner(learner).config)}
    wanted = {"gamma": m.gamma, "batch_size": m.batch_size, "actor_hidden": m.hidden, "critic_hidden": m.hidden,
              "hidden": m.hidden, "critics": m.critics, "penalty": m.penalty, "eta": m.eta, "beta": m.beta,
              "uncertainty": m.uncertainty, "soft_rate": m.soft_rate, "target_every": target_every(m),
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
        if m.ranker in BUILT_IN:  # no --ranker: the taste-free view (the simulator itself leaves no room)
            try:
                self.ranker, _ = built_in_ranker(self.model, m.ranker)
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
        else:
            from recrl_cli.mtf.mtl_ranker import load_mtl_ranker, read_ranker

            saved = read_ranker(m.ranker)  # a simulator run, or an MTL base / RMTL run on KuaiRand
            if saved.get("dataset_fingerprint") != data.fingerprint:
                raise ConfigError(f"the ranker {m.ranker} was trained on other data than {data.directory}")
            if saved["algo"] == "simulator":
                self.ranker, _ = load_simulator(m.ranker, device, option="--ranker")
            else:
                try:
                    self.ranker = load_mtl_ranker(saved, data, self.model.play_edges, device)
                except LOAD_ERRORS as exc:
                    raise DataError(f"--ranker {m.ranker}: the saved {saved['algo']} model cannot be rebuilt "
                                    f"({error_detail(exc)})") from None  # fmt: skip
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
        self.center: Any = None  # the frozen policy the next round explores around (None: μ_bp⁰)
        self.guard = m.ptm_guard and self.rounds > 1
        self.guard_log: list[dict[str, float]] = []  # per round: the validation A/B and the decision
        self.run_dir = Path("runs") / "mtf"  # replaced by bind_run_dir (the pipeline's run directory)
        self._eval: dict[str, float] | None = None
        # The learning curve of the iterations run in this process (a resumed run's curve starts at the resume):
        # CEM's generations, the learner's per-update logs, and each round's logged reward per request at the
        # learner update where the round was collected.
        self.cem_rows: list[dict[str, float]] = []
        self.update_rows: list[dict[str, float]] = []
        self.round_rewards: list[tuple[int, float]] = []

    # -- env ---------------------------------------------------------------------------------------------------
    def make_env(self, seed: int, batch: int = 0) -> FusionEnv:
        """A fresh fusion env on env seed ``seed`` with ``batch`` users in parallel (0 = ``batch_users``)."""
        m = self.m
        env_cfg = EnvConfig(batch_users=batch or m.batch_users, slate_size=m.slate_size, initial_temper=m.initial_temper,
                            item_correlation=m.item_correlation, seed=seed)  # fmt: skip
        sim = WholeSessionEnv.from_data(self.model, self.data, env_cfg)
        return FusionEnv(
            sim, self.ranker, retrieved=m.retrieved, random=m.random_candidates, weights=self.weights
        )

    def bind_run_dir(self, run_dir: Path) -> None:
        """The pipeline tells the run's directory: the logs go under it unless ``--logs-dir`` says otherwise."""
        self.run_dir = Path(run_dir)

    def log_path(self, stem: str) -> Path:
        run = f"{self.name}-seed{self.cfg.train.seed}-{self.noise}-b{self.width:g}"
        root = Path(self.m.logs_dir) if self.m.logs_dir else self.run_dir / "mtf-logs"
        return root / run / f"{stem}.parquet"

    # -- stages ------------------------------------------------------------------------------------------------
    def cem_step(self, idx: torch.Tensor) -> dict[str, float]:
        out = self.cem.iterate()
        self.mu_bp0 = self.cem.policy()
        self.cem_rows.append(out)
        return out

    def collect_step(self, r: int) -> dict[str, float]:
        center = self.centre_policy()
        steps = max(1, self.m.collect_steps // self.rounds)
        logs = collect(self.env, center, noise=self.noise, width=self.width, bound=self.m.bounds, steps=steps,
                       generator=self.generator, round_id=r)  # fmt: skip
        write_logs(logs, self.log_path(f"round{r}"), self.noise)
        self.logs.append(logs)
        self.store = to_store(concat(self.logs))
        reward = float(logs.reward.sum(1).mean())  # per logged request, exploration on
        self.round_rewards.append((len(self.update_rows), reward))
        return {"reward": reward, "rows": float(len(logs))}

    def train_step(self, idx: torch.Tensor) -> dict[str, float]:
        assert self.learner is not None and self.store is not None
        out = self.learner.update(self.store.sample(self.m.batch_size, self.generator))
        self.update_rows.append(out)
        return out

    def curves(self) -> dict[str, list[tuple[int, float]]]:
        """The learning curve, drawn beside the A/B's ``test/<policy>/request_reward`` lines (ES, the learned
        policy, the fixed fusion). With a learner, over its updates: ``request_reward`` = each round's logged
        reward per request (exploration on, at the update where the round was collected) and the learner's own
        logs (losses, mean Q, …) in bins. ``mtf-es``, over CEM generations: ``request_reward`` = the population's
        mean reward per request, and the CEM's best score and σ."""
        from recrl_cli.reporting import bin_curve

        if self.learner is None:
            rows = [{"request_reward": r["score_mean"], "cem_score_best": r["score_best"], "cem_std": r["std"]}
                    for r in self.cem_rows]  # fmt: skip
            return bin_curve(rows)
        out = bin_curve(self.update_rows)
        if self.round_rewards:
            out["request_reward"] = list(self.round_rewards)
        return out

    def centre_policy(self) -> Any:
        """What the next round explores around and what the run reports as its policy: the last kept round's
        learner (μ_bp⁰ while none was kept)."""
        return self.mu_bp0 if self.center is None else self.center.act

    def guard_ab(self, r: int, candidate: Any, centre: Any) -> tuple[float, float]:
        """The paired validation A/B of round ``r``: (reward % change of ``candidate`` vs ``centre``, its CI).

        One wave of ``guard_users`` sessions on env seed train seed + 500,000 + r: users the training logs and the
        final evaluation (``eval_seed`` …) never see, a fresh set per round so that five decisions do not tune
        the policy to one set of users; common random numbers as in the final A/B.
        """
        seeds = [self.cfg.train.seed + 500_000 + r]
        users = self.m.guard_users

        def make(seed: int) -> FusionEnv:
            return self.make_env(seed, users)

        new, old = ab_sessions(make, candidate, seeds), ab_sessions(make, centre, seeds)
        return paired_pct_change(new["reward"], old["reward"])

    def end_round(self, r: int) -> None:
        """Freeze the round's learner; with the guard keep it as the centre only if it is not worse.

        Why a validation A/B and not an estimate on held-out logged data: the logs explore a 10-dimensional box,
        so an importance-sampling (NCIS) estimate of a policy that moved inside the box keeps only the logged
        requests whose 10 offsets all fall within the kernel of the policy's action, a handful of the round's
        few hundred requests (UNIFIEDRL_NOTES.md, "PTM guard"). PTM deploys every round's policy to collect the
        next round anyway, so comparing it online against the centre before promoting it is what the protocol
        already allows, and the paired A/B resolves ±0.5 % with a few hundred sessions.
        """
        candidate = copy.deepcopy(self.learner)
        if not self.guard:
            self.center = candidate
            return
        if r < len(self.guard_log):  # re-run on resume: the decision was taken and saved
            return
        pct, ci = self.guard_ab(r, candidate.act, self.centre_policy())
        keep = pct >= 0.0
        if keep:
            self.center = candidate
        self.guard_log.append({"change_pct": pct, "change_ci": ci, "kept": float(keep)})

    def stages(self) -> list[Stage]:
        out = [Stage(name="behaviour", num_rows=self.m.cem_iterations, update=self.cem_step, batch_size=1,
                     max_epochs=1, shuffle=False, unit="iteration")]  # fmt: skip
        if self.learner is None:
            return out
        per_round = max(1, self.m.iterations // self.rounds)
        for r in range(self.rounds):
            out.append(Stage(name=f"collect{r}", num_rows=1, update=lambda idx, r=r: self.collect_step(r),
                             batch_size=1, max_epochs=1, shuffle=False, unit="iteration"))  # fmt: skip
            out.append(Stage(name=f"train{r}", num_rows=per_round, update=self.train_step, batch_size=1,
                             max_epochs=1, shuffle=False, on_end=lambda r=r: self.end_round(r), unit="iteration"))  # fmt: skip
        return out

    # -- evaluation --------------------------------------------------------------------------------------------
    def policies(self) -> dict[str, Any]:
        """The policies of the A/B: ``es`` (μ_bp⁰), ``policy`` (the learned one; μ_bp⁰ for mtf-es) and ``fixed``
        (one fusion for everyone: the zero action, every power 1 and bias at its floor, i.e. the plain product
        of the ranker's targets; the non-personalised reference)."""
        fixed = lambda state: state.new_zeros(state.shape[0], self.env.action_dim)  # noqa: E731
        if self.learner is None:
            learned = self.mu_bp0
        elif self.guard:  # PTM with the guard: the last round's policy that passed it (μ_bp⁰ if none did)
            learned = self.centre_policy()
        else:
            learned = self.learner.act
        return {"es": self.mu_bp0, "policy": learned, "fixed": fixed}

    def evaluate(self, split: str) -> dict[str, float]:
        if split != "test":
            return {}
        if self._eval is None:
            self._eval = self._evaluate()
        return self._eval

    def _evaluate(self) -> dict[str, float]:
        m = self.m
        seeds = [m.eval_seed + i for i in range(m.eval_waves)]
        out: dict[str, float] = {"ranker_is_simulator": float(self.ranker is self.model),
                                 "ranker_is_taste_free_view": float(self.m.ranker in BUILT_IN and
                                                                    self.ranker is not self.model)}  # fmt: skip
        names = ("valid_consumption", "watch_minute", "like", "follow", "comment", "forward", "hate")
        out.update({f"reward_weight/{k}": w for k, w in zip(names, self.weights, strict=True)})
        users = m.eval_users or m.batch_users
        # Common random numbers: every policy replays the same env seeds, hence the same first user of every row
        # and the same random draws per (row, request); session i of a policy is paired with session i of ES.
        ab = {who: ab_sessions(lambda seed: self.make_env(seed, users), pol, seeds)
              for who, pol in self.policies().items()}  # fmt: skip
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
            # The learning curve's unit: reward per request over all of the policy's A/B requests.
            out[f"{who}/request_reward"] = float(
                ab[who]["reward"].sum() / ab[who]["depth"].sum().clamp(min=1)
            )
            if who == "fixed":  # the reference row of the A/B only: no offline metrics
                continue
            out[f"{who}/mtf_gauc"] = log_mtf_gauc(test, pol, self.env.action_map, self.env.weights)
            out[f"{who}/mtf_gauc_by_request"] = log_mtf_gauc(
                test, pol, self.env.action_map, self.env.weights, by="request"
            )
            for k, v in log_ncis(explore_log, pol, batch=m.batch_users, noise="uniform", width=m.bounds,
                                 kernel=kernel, cap=m.ncis_cap).items():  # fmt: skip
                out[f"{who}/{k}"] = v
        for who in ("policy", "fixed"):
            for k in AB_METRICS:
                out[f"{who}/{k}_change_pct"], out[f"{who}/{k}_change_ci"] = paired_pct_change(
                    ab[who][k], ab["es"][k]
                )
        # What the same sessions would give unpaired, and how many paired sessions ±0.5 % would take.
        out["policy/reward_change_ci_unpaired"] = unpaired_pct_change(
            ab["policy"]["reward"], ab["es"]["reward"]
        )[1]
        for r, g in enumerate(self.guard_log):
            out.update({f"ptm/round{r}/{k}": v for k, v in g.items()})
        if self.guard:
            out["ptm/rounds_kept"] = float(sum(g["kept"] for g in self.guard_log))
        out["ab/sessions_for_half_pct"] = sessions_for_ci(ab["policy"]["reward"], ab["es"]["reward"], 0.5)
        out.update({f"policy/{k}": v for k, v in premise(test, self.policies()["policy"], m.bounds).items()})
        return out

    def predict(self, features: torch.Tensor) -> torch.Tensor:
        raise ConfigError(f"{self.name} fuses scores in the simulator; it does not score rows")

    # -- persistence -------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"cem": {"mean": self.cem.mean, "std": self.cem.std},
                "learner": None if self.learner is None else self.learner.state_dict(),
                "center": None if self.center is None else self.center.state_dict(),
                "logs": [dataclasses.asdict(x) for x in self.logs], "guard": [dict(g) for g in self.guard_log]}  # fmt: skip

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.cem.mean, self.cem.std = state["cem"]["mean"], state["cem"]["std"]
        self.mu_bp0 = self.cem.policy()
        if self.learner is not None and state["learner"] is not None:
            self.learner.load_state_dict(state["learner"])
        self.center = None
        if state["center"] is not None and self.learner is not None:
            self.center = copy.deepcopy(self.learner)
            self.center.load_state_dict(state["center"])
        self.logs = [Logs(**x) for x in state["logs"]]
        # checkpoints from before the guard have none
        self.guard_log = [dict(g) for g in state.get("guard", [])]
        self.store = to_store(concat(self.logs)) if self.logs else None

    def export(self) -> dict[str, Any]:
        return {"algo": self.name, "learner": self.learner_name, "config": dataclasses.asdict(self.m),
                "mu_bp": {"theta": self.mu_bp0.theta, "scale": self.mu_bp0.scale},
                "state": None if self.learner is None else self.learner.state_dict(),
                "centre": None if self.center is None else self.center.state_dict(), "guard": self.guard_log}  # fmt: skip


def mtf_builder(name: str):
    def build(cfg: RunConfig, data: Any, device: torch.device) -> MTFAlgorithm:
        return MTFAlgorithm(name, cfg, data, device)

    return build


def load_mtf_predictor(exported: dict[str, Any], device: torch.device):
    raise ConfigError(f"{exported.get('algo', 'a fusion policy')} acts in the simulator and does not score rows; "
                      "its evaluation metrics are in the training run (eval/test/policy/...)")  # fmt: skip
