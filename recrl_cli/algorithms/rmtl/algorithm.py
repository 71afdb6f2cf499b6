"""RMTL (Liu et al., WWW 2023) as three trainer stages in one run: pretrain → critics → polish (rmtl.md §1-2).

1. ``pretrain``: the MTL base (the actor) with plain BCE, early stopping on validation (as SupervisedMTL).
2. ``critics``: the actor is frozen; its eval-mode probabilities for every train row are computed ONCE and the
   session MDP is built once from the train split (:mod:`.mdp`). One critic per task is fitted by TD learning
   (:class:`.critics.CriticLearner`). A batch is a slice of one per-epoch permutation of the transitions; every
   tensor it reads already lives on the device, so a step is the critics' arithmetic and nothing else (the
   reference re-ran the actor, copied host→device and permuted 500k indices on every step, §7.1).
3. ``polish``: a fresh Adam fine-tunes the base on (1/T) Σ_k mean_i w_{i,k}·BCE_{i,k} with w from the critics at
   the base's current prediction (:mod:`.polish`). Early stopping on validation starts from the pretrained
   model: the polished model is kept only if it beats it (the reference started from 0, bug 16).

The pretrained model's val/test metrics are reported next to the final ones (:meth:`RMTL.extra_metrics`).
"""

from __future__ import annotations

import copy
import dataclasses
import math
from typing import Any

import torch
import torch.nn.functional as F

from recrl_cli.algorithms.calibration import CalibrationGuard, guarded_validate
from recrl_cli.algorithms.rmtl.config import RMTLConfig, effective_switches
from recrl_cli.algorithms.rmtl.critics import CriticLearner, TaskCritics
from recrl_cli.algorithms.rmtl.mdp import (
    SessionMDP,
    build_session_mdp,
    critic_cardinalities,
    critic_states,
    normalize_state_ids,
)
from recrl_cli.algorithms.rmtl.polish import mean_rmtl_weight, normalized, polish_weights, weighted_bce
from recrl_cli.algorithms.rmtl.transfer import export_critics, load_critics
from recrl_cli.algorithms.supervised import multitask_bce
from recrl_cli.config.monitor import check_monitor_names, monitor_score
from recrl_cli.config.schema import RunConfig
from recrl_cli.data.tensors import PreparedData
from recrl_cli.evaluation.evaluator import evaluate_split, predict_in_batches
from recrl_cli.nets.layers import FeatureEmbedding
from recrl_cli.nets.mtl import build_base
from recrl_cli.nets.mtl.calibration import init_output_bias
from recrl_cli.text.attach import attach_item_text
from recrl_cli.training import distributed
from recrl_cli.training.trainer import Stage

EVAL_SPLITS = ("val", "test")
RANDOM_ACTION_SEED_OFFSET = (
    7919  # the random_actions buffer has its own generator: rebuilt identically on resume
)


class RMTL:
    """The three-stage RMTL algorithm on one MTL base. ``cfg.model`` is an :class:`RMTLConfig`."""

    def __init__(self, cfg: RunConfig, data: PreparedData, device: torch.device) -> None:
        self.cfg, self.data, self.device = cfg, data, device
        self.m: RMTLConfig = cfg.model
        self.switches = effective_switches(self.m)
        self.tasks = data.tasks
        check_monitor_names(cfg.train.monitor, self.tasks)
        self.train_split = data.splits["train"]
        base = build_base(self.m.base, data.cardinalities, len(self.tasks), self.m.mtl_config())
        self.base = base.to(device)
        # --item-encoder text: the actor's item field reads a language model over item text (no-op for ids).
        attach_item_text(self.base, self.m.mtl_config(), cfg.data.prepared_dir, data.feature_names, device)

        # Data-parallel runs (see training/distributed.py): this process's train rows; base steps go through DDP.
        self.shard = data.shards["train"] if data.shards else None
        # As SupervisedMTL: output bias at the training log-odds; early stopping never keeps an epoch whose val
        # logloss is worse than the constant predictor's (pretrain and polish alike).
        self.guard = CalibrationGuard(
            self.train_split.labels,
            self.tasks,
            enabled=cfg.train.calibration_guard,
            sharded=self.shard is not None,
        )
        if self.m.bias_init == "prior":
            init_output_bias(self.base, self.guard.rates, product=self.m.base == "esmm")
        self.train_base = distributed.data_parallel(self.base) if self.shard else self.base
        # Same optimizer as SupervisedMTL (fused Adam on CPU/CUDA), so the pretrain stage is that training.
        adam = dict(
            weight_decay=cfg.train.weight_decay, fused=True if device.type in ("cpu", "cuda") else None
        )
        self.optimizer = torch.optim.Adam(self.base.parameters(), lr=cfg.train.lr, **adam)
        self.polish_optimizer = torch.optim.Adam(self.base.parameters(), lr=self.m.polish_lr, **adam)
        self.critics: TaskCritics | None = None
        self.learner: CriticLearner | None = None
        self.context = self.switches["context"]
        self.transferred = bool(self.m.critics) and self.m.uses_critics
        if self.transferred:  # the saved critics bring their own context flag and architecture
            self.critics, self.context = load_critics(
                self.m.critics, feature_names=data.feature_names, cardinalities=data.cardinalities,
                tasks=self.tasks, device=device, history_length=data.history_length,
            )  # fmt: skip
        elif self.m.uses_critics:
            self.critics = self._new_critics()
            self.learner = self._new_learner()
        # Progress that must survive a resume (see state_dict); derived tensors are rebuilt lazily.
        self.critics_initialised = False
        self.pretrained: dict[str, Any] | None = None  # {"weights": base state, "metrics": {split: metrics}}
        self.polish_best = -math.inf
        self.polish_improved = False
        self.mean_weight: torch.Tensor | None = None
        self._states: torch.Tensor | None = None  # [N, F'] critic state ids of the train rows
        self._mdp: SessionMDP | None = None

    # ------------------------------------------------------------------ construction helpers
    def _new_critics(self) -> TaskCritics:
        m = self.m
        cards = critic_cardinalities(
            self.data.cardinalities, len(self.tasks), self.context, self.data.history_length
        )
        critics = TaskCritics(
            cards, len(self.tasks), m.critic_embed_dim, m.critic_bottom_dims, m.critic_tower_dims,
            m.critic_dropout, relu_output=self.switches["relu_critic_output"],
        ).to(self.device)  # fmt: skip
        if self.switches["identical_critic_init"]:
            critics.copy_first_critic()
        return critics

    def _new_learner(self) -> CriticLearner:
        return CriticLearner(
            self.critics, lr=self.m.critic_lr, gamma=self.m.gamma, tau=self.m.tau,
            target_update_every=self.m.target_update_every, twin_min_same=self.switches["twin_min_same_critic"],
            target_noise=self.switches["tiny_target_noise"],
        )  # fmt: skip

    def _split(self, name: str) -> str:
        """Faithful bug 2: the reference early-stops on test.csv and reports val.csv as "test"."""
        if self.switches["swap_val_test"] and name in EVAL_SPLITS:
            return {"val": "test", "test": "val"}[name]
        return name

    # ------------------------------------------------------------------ stages
    def stages(self) -> list[Stage]:
        train, m = self.cfg.train, self.m
        shuffle = train.shuffle and not self.switches["unshuffled"]
        n = self.shard.total if self.shard else self.train_split.num_rows
        base_stage = dict(
            num_rows=n, batch_size=train.batch_size, max_steps=train.max_steps, shuffle=shuffle,
            patience=train.patience, snapshot=lambda: copy.deepcopy(self.base.state_dict()),
            restore=self.base.load_state_dict,
        )  # fmt: skip
        stages = [
            Stage(name="pretrain", update=self.pretrain_update, max_epochs=m.pretrain_epochs,
                  validate=self._validate_pretrain, monitor=self.guard.monitor_key(train.monitor),
                  on_end=self._after_pretrain,
                  **base_stage),
        ]  # fmt: skip
        if self.learner is not None:
            stages.append(
                Stage(name="critics", num_rows=n, update=self.critic_update, batch_size=m.critic_batch_size,
                      max_epochs=m.critic_epochs, max_steps=train.max_steps, shuffle=True,
                      on_epoch_start=self._prepare_critics, on_end=self._after_critics)
            )  # fmt: skip
        forget = self.switches["polish_forgets_pretrained"]
        stages.append(
            Stage(name="polish", update=self.polish_update, max_epochs=m.polish_epochs,
                  validate=self._validate_polish,
                  monitor=self.guard.monitor_key(train.monitor) if forget else self._improved_key,
                  on_epoch_start=self._prepare_polish, on_end=self._after_polish, **base_stage)
        )  # fmt: skip
        return stages

    # -- pretrain
    def _validate_pretrain(self) -> dict[str, float]:
        """Validation metrics annotated by the calibration guard."""
        val = self.data.splits[self._split("val")].labels
        return guarded_validate(lambda: self.evaluate("val"), self.guard, val, self.cfg.train.monitor)()

    def pretrain_update(self, idx: torch.Tensor) -> dict[str, float]:
        """One BCE step of the base on train rows ``idx`` [B]."""
        self.base.train()
        if self.shard is not None:  # this process's rows of the global batch; DDP all-reduces the gradients
            idx, batch_rows = self.shard.localize(idx)
            logits, labels = self.train_base(self.train_split.features[idx]), self.train_split.labels[idx]
            bce = F.binary_cross_entropy_with_logits(logits, labels, reduction="none")
            loss = distributed.sharded_mean(bce, batch_rows)
        else:
            loss = multitask_bce(self.base(self.train_split.features[idx]), self.train_split.labels[idx])
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return {"loss": distributed.global_mean(loss) if self.shard else loss.item()}

    def _after_pretrain(self) -> None:
        """Keep the best pretrained weights and their metrics: the polish baseline and the side-by-side report."""
        metrics = {split: self.evaluate(split) for split in EVAL_SPLITS}
        self.pretrained = {"weights": copy.deepcopy(self.base.state_dict()), "metrics": metrics}
        guarded = self.guard.annotate(dict(metrics["val"]), self.data.splits[self._split("val")].labels,
                                      self.cfg.train.monitor)  # fmt: skip
        best = monitor_score(
            self.cfg.train.monitor, guarded.get(self.guard.monitor_key(self.cfg.train.monitor), math.nan)
        )
        self.polish_best = best if not math.isnan(best) else -math.inf  # an undefined score is beaten by any

    # -- critics
    def critic_states(self) -> torch.Tensor:
        """[N, F'] critic state ids of every train row (built once)."""
        if self._states is None:
            s = self.train_split
            num_fields = len(self.data.cardinalities)
            self._states = critic_states(
                s.features, s.labels, s.session_ids, s.positions, self.context, num_fields
            )
        return self._states

    def _prepare_critics(self) -> None:
        """Build the MDP once from the frozen pretrained actor; start the critics from its embedding once."""
        if self._mdp is None:
            s = self.train_split
            probs = predict_in_batches(
                self.predict, s.features, self.cfg.train.eval_batch_size
            )  # [N, T], eval
            stored = None
            if self.switches["random_actions"]:  # reference §2.2: env.action_space.sample()
                gen = torch.Generator(device=self.device).manual_seed(
                    self.cfg.train.seed + RANDOM_ACTION_SEED_OFFSET
                )
                if self.shard is None:
                    stored = torch.rand(probs.shape, generator=gen, device=self.device)
                else:  # the whole split's draw, so a shard gets exactly the 1-process values of its rows
                    whole = (self.shard.total, probs.shape[1])
                    stored = torch.rand(whole, generator=gen, device=self.device)[
                        self.shard.start : self.shard.stop
                    ]
            self._mdp = build_session_mdp(
                s.session_ids, s.labels, probs, stored_actions=stored,
                affine_mismatch=self.switches["action_affine_mismatch"],
            )  # fmt: skip
        if not self.critics_initialised:
            if self.m.critic_init_from_actor:
                self._copy_actor_tables()
            self.learner.reset_target()
            self.critics_initialised = True

    def _copy_actor_tables(self) -> None:
        tables = [mod.weight.detach() for mod in self.base.modules() if isinstance(mod, FeatureEmbedding)]
        if tables and len(tables) in (1, len(self.tasks)) and tables[0].shape[1] == self.m.critic_embed_dim:
            self.critics.load_feature_tables(tables)  # singletask: critic k starts from task k's own table

    def critic_update(self, idx: torch.Tensor) -> dict[str, float]:
        """One TD step on transitions ``idx`` [B]: pure gathers from device tensors, then the learner's step."""
        mdp, states = self._mdp, self.critic_states()
        batch_rows = None
        if self.shard is not None:  # local transitions: sessions never straddle two shards
            idx, batch_rows = self.shard.localize(idx)
        nxt = mdp.next_index[idx]
        s, s_next = states[idx], states[nxt]
        if self.switches["normalize_state_ids"]:  # bug 3: each batch z-scored on its own, TD phase only
            num_fields = len(self.data.cardinalities)
            s = normalize_state_ids(s, self.critics.arch["cardinalities"], num_fields)
            s_next = normalize_state_ids(s_next, self.critics.arch["cardinalities"], num_fields)
        batch = (s, mdp.actions[idx], mdp.rewards[idx], mdp.done[idx], s_next, mdp.policy_actions[nxt])
        if batch_rows is None:
            return self.learner.step(*batch)
        return self.learner.step(*batch, batch_rows=batch_rows)

    def _after_critics(self) -> None:
        """Polish needs only the online critics: drop the target, Adam moments and buffer (memory, checkpoints)."""
        self.learner, self._mdp = None, None

    # -- polish
    @property
    def _improved_key(self) -> str:
        return f"improved/{self.cfg.train.monitor}"

    def _critic_values(self, idx: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
        """Q [B, T] of train rows ``idx`` at actions ``probs`` (no grad; eval mode unless bug 6 is on)."""
        self.critics.train(self.switches["critic_dropout_at_polish"])
        with torch.no_grad():
            return self.critics(self.critic_states()[idx], probs)

    def _prepare_polish(self) -> None:
        if self.m.weighting == "mean-weight" and self.mean_weight is None:
            s, bs = self.train_split, self.cfg.train.eval_batch_size
            probs = predict_in_batches(self.predict, s.features, bs)  # the pretrained model's actions
            self.critics.eval()  # a constant: computed without dropout
            with torch.no_grad():
                rows = torch.arange(s.num_rows, device=self.device)
                q = torch.cat([self.critics(self.critic_states()[r], probs[r]) for r in rows.split(bs)])
            if self.shard is None:
                self.mean_weight = mean_rmtl_weight(q, self.m.lam)
            else:  # the mean over the whole split: sums and counts of every shard
                total = distributed.all_sum(
                    torch.cat([q.double().sum(0), q.new_tensor([q.shape[0]]).double()])
                )
                self.mean_weight = (1.0 - self.m.lam * total[:-1] / total[-1]).to(q.dtype)

    def polish_update(self, idx: torch.Tensor) -> dict[str, float]:
        """One step of the critic-weighted BCE on train rows ``idx`` [B] (stop-gradient on Q)."""
        self.base.train()
        batch_rows = None
        if self.shard is not None:
            idx, batch_rows = self.shard.localize(idx)
        labels = self.train_split.labels[idx]
        logits = self.train_base(self.train_split.features[idx])
        q = self._critic_values(idx, torch.sigmoid(logits.detach())) if self.critics is not None else None
        weights = polish_weights(
            self.m.weighting,
            labels,
            q,
            lam=self.m.lam,
            cw_weight=self.m.cw_weight,
            mean_weight=self.mean_weight,
        )
        if self.m.normalize_weights:
            weights = normalized(weights)
        if batch_rows is None:
            loss = weighted_bce(logits, labels, weights)
        else:  # weighted_bce's mean, as this process's DDP share of the global batch
            bce = F.binary_cross_entropy_with_logits(logits, labels, reduction="none")
            loss = distributed.sharded_mean(weights.detach() * bce, batch_rows)
        self.polish_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.polish_optimizer.step()
        if batch_rows is not None:  # the global batch's loss and mean weight
            world = distributed.rank_world()[1]
            sums = distributed.all_sum(torch.stack([loss.detach() / world, weights.sum()]))
            return {"loss": float(sums[0]), "weight_mean": float(sums[1] / (batch_rows * labels.shape[1]))}
        values = torch.stack([loss.detach(), weights.mean()]).tolist()  # one host sync
        return dict(zip(("loss", "weight_mean"), values, strict=True))

    def _validate_polish(self) -> dict[str, float]:
        """Validation metrics plus ``improved/<monitor>``: the monitored value when it beats everything so far
        (the pretrained model included), else NaN, which the trainer never counts as an improvement."""
        metrics = self._validate_pretrain()  # the guard applies to polished epochs too
        value = metrics.get(self.guard.monitor_key(self.cfg.train.monitor), math.nan)
        score = monitor_score(self.cfg.train.monitor, value)  # higher is better, a logloss negated
        if score > self.polish_best:
            self.polish_best, self.polish_improved = score, True
            metrics[self._improved_key] = value
        else:
            metrics[self._improved_key] = math.nan
        return metrics

    def _after_polish(self) -> None:
        """No polish epoch beat the pretrained model: keep the pretrained model (bug 16 off)."""
        if not self.switches["polish_forgets_pretrained"] and not self.polish_improved:
            self.base.load_state_dict(self.pretrained["weights"])

    # ------------------------------------------------------------------ scoring
    @torch.no_grad()
    def predict(self, features: torch.Tensor) -> torch.Tensor:
        """Probabilities [N, T] for features [N, F] (eval mode)."""
        self.base.eval()
        return torch.sigmoid(self.base(features))

    def evaluate(self, split: str) -> dict[str, float]:
        data = self.data.splits[self._split(split)]
        gather = distributed.gather_rows if self.data.shards else None
        return evaluate_split(self.predict, data, self.tasks, self.cfg.train.eval_batch_size, gather)

    def extra_metrics(self) -> dict[str, float]:
        """The pretrained base's metrics as ``pretrained/<split>/<task>/<metric>`` (same names as ``eval/``)."""
        if self.pretrained is None:
            return {}
        return {
            f"pretrained/{split}/{name}": value
            for split, metrics in self.pretrained["metrics"].items()
            for name, value in metrics.items()
        }

    def serving_model(self) -> tuple[torch.nn.Module, torch.Tensor]:
        """The polished base as MLflow logs it: feature ids [B, F] → probabilities [B, T] (the critics stay in
        ``model.pt``: they score (state, action) pairs, not rows)."""
        from recrl_cli.nets.serving import scoring_model

        return scoring_model(self.base, self.train_split.features)

    # ------------------------------------------------------------------ persistence
    def state_dict(self) -> dict[str, Any]:
        return {
            "base": self.base.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "polish_optimizer": self.polish_optimizer.state_dict(),
            "critics": self.critics.state_dict() if self.critics is not None else None,
            "learner": self.learner.state_dict() if self.learner is not None else None,
            "critics_initialised": self.critics_initialised,
            "pretrained": self.pretrained,
            "polish_best": self.polish_best,
            "polish_improved": self.polish_improved,
            "mean_weight": self.mean_weight,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.base.load_state_dict(state["base"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.polish_optimizer.load_state_dict(state["polish_optimizer"])
        if state["critics"] is not None:
            self.critics.load_state_dict(state["critics"])
        if state["learner"] is not None:
            self.learner.load_state_dict(state["learner"])
        else:  # saved after the critic stage
            self.learner = None
        self.critics_initialised = state["critics_initialised"]
        self.pretrained = state["pretrained"]
        self.polish_best, self.polish_improved = state["polish_best"], state["polish_improved"]
        self.mean_weight = state["mean_weight"]

    def export(self) -> dict[str, Any]:
        """The base (loadable by :func:`recrl_cli.algorithms.supervised.load_mtl_predictor`) plus the critics."""
        mtl = self.m.mtl_config()
        critics = None
        if self.critics is not None:
            critics = export_critics(
                self.critics, self.context, self.data.feature_names, self.tasks, self.data.history_length
            )
        return {
            "base": self.m.base,
            "model_config": {f.name: getattr(mtl, f.name) for f in dataclasses.fields(mtl)},
            "cardinalities": self.data.cardinalities,
            "tasks": self.tasks,
            "weights": {k: v.detach().cpu() for k, v in self.base.state_dict().items()},
            "critics": critics,
            "critics_source": self.m.critics if self.transferred else None,
            "pretrained_metrics": self.pretrained["metrics"] if self.pretrained is not None else None,
        }


def build_rmtl(cfg: RunConfig, data: PreparedData, device: torch.device) -> RMTL:
    """The registry's ``build`` for ``rmtl``."""
    return RMTL(cfg, data, device)
