"""Supervised multi-task training of one MTL base (``recrl train mmoe`` and friends).

The loss is the mean over tasks of the per-task mean BCE, as in the RMTL reference's SL stage:
``L = (1/T) Σ_t mean_i BCE(σ(z_{i,t}), y_{i,t})`` computed from logits for stability. Adam with weight
decay, early stopping on the validation ``train.monitor`` metric with the best epoch restored.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F

from recrl_cli.algorithms.calibration import CalibrationGuard, guarded_validate
from recrl_cli.config.monitor import check_monitor_names
from recrl_cli.config.schema import RunConfig
from recrl_cli.data.tensors import PreparedData
from recrl_cli.evaluation.evaluator import evaluate_split
from recrl_cli.nets.mtl import build_base
from recrl_cli.nets.mtl.calibration import init_output_bias
from recrl_cli.nets.mtl.config import MTLConfig
from recrl_cli.text.attach import attach_item_text, rebuild_item_text
from recrl_cli.training import distributed
from recrl_cli.training.trainer import Stage


def multitask_bce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean over tasks and rows of BCE-with-logits. logits, labels: [B, T] → scalar."""
    return F.binary_cross_entropy_with_logits(logits, labels)


class SupervisedMTL:
    """One MTL base trained with plain BCE.

    Args:
        base: registry name of the MTL base (``mmoe`` ...).
        cfg: the resolved run configuration (``cfg.model`` is an :class:`MTLConfig`).
        data: prepared splits on ``device`` (``train`` required, ``val`` for early stopping).
        device: where the model lives.
    """

    def __init__(self, base: str, cfg: RunConfig, data: PreparedData, device: torch.device) -> None:
        self.base = base
        self.cfg = cfg
        self.data = data
        self.tasks = data.tasks
        check_monitor_names(cfg.train.monitor, self.tasks)
        self.model = build_base(base, data.cardinalities, len(self.tasks), cfg.model).to(device)
        train_labels = data.splits["train"].labels
        # Output bias at the training log-odds (model.bias_init): the model starts as the constant predictor.
        self.shard = data.shards["train"] if data.shards else None
        self.guard = CalibrationGuard(
            train_labels, self.tasks, enabled=cfg.train.calibration_guard, sharded=self.shard is not None
        )
        if cfg.model.bias_init == "prior":
            init_output_bias(self.model, self.guard.rates, product=base == "esmm")
        # --item-encoder text: the item field reads a language model over item text (no-op for ids).
        attach_item_text(self.model, cfg.model, cfg.data.prepared_dir, data.feature_names, device)

        # Data-parallel runs: this process's share of the train rows (self.shard); train steps go through DDP.
        self.train_model = distributed.data_parallel(self.model) if self.shard else self.model
        # Fused Adam: the same update (L2 weight decay added to the gradient), one kernel over each tensor
        # instead of the ~10 elementwise passes of the default per-parameter loop on CPU, which made a
        # SharedBottom step ~1.6x slower: Adam updates the whole dense embedding table every step
        # (benchmarks/RESULTS.md). Other devices keep torch's default.
        fused = True if device.type in ("cpu", "cuda") else None
        self.optimizer = torch.optim.Adam(
            self.model.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay, fused=fused
        )
        # CPU: the embedding gradients reach Adam as the same dense tensors, but built in buffers reused every
        # step instead of a freshly page-faulted [V, D] block per step (see nets/embedding_grad.py).
        from recrl_cli.nets.embedding_grad import DenseEmbeddingGrads

        # (Not under DDP: its reducer hooks the gradients as the backward produces them, so they stay dense.)
        use_buffers = device.type == "cpu" and self.shard is None
        self.embedding_grads = DenseEmbeddingGrads(self.model) if use_buffers else None

    # -- training ----------------------------------------------------------------
    def update(self, idx: torch.Tensor) -> dict[str, float]:
        """One Adam step on rows ``idx`` [B] of the train split."""
        split = self.data.splits["train"]
        self.model.train()
        if self.shard is not None:
            return self._sharded_update(idx)
        loss = multitask_bce(self.model(split.features[idx]), split.labels[idx])
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.embedding_grads is not None:
            self.embedding_grads.densify()
        self.optimizer.step()
        return {"loss": loss.item()}

    def _sharded_update(self, idx: torch.Tensor) -> dict[str, float]:
        """Data-parallel step: this process's rows of the global batch ``idx`` [B], gradients all-reduced by DDP."""
        split = self.data.splits["train"]
        local, batch_rows = self.shard.localize(idx)
        logits = self.train_model(split.features[local])
        bce = F.binary_cross_entropy_with_logits(logits, split.labels[local], reduction="none")
        loss = distributed.sharded_mean(bce, batch_rows)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return {"loss": distributed.global_mean(loss)}

    def stages(self) -> list[Stage]:
        train = self.cfg.train
        has_val = "val" in self.data.splits
        return [
            Stage(
                name="train",
                num_rows=self.shard.total if self.shard else self.data.splits["train"].num_rows,
                update=self.update,
                batch_size=train.batch_size,
                max_epochs=train.epochs,
                max_steps=train.max_steps,
                shuffle=train.shuffle,
                validate=self._validate() if has_val else None,
                monitor=self.guard.monitor_key(train.monitor) if has_val else None,
                patience=train.patience,
                snapshot=lambda: copy.deepcopy(self.model.state_dict()),
                restore=self.model.load_state_dict,
            )
        ]

    def _validate(self):
        """Validation metrics, annotated by the calibration guard (``guarded/<monitor>``)."""
        val = self.data.splits["val"].labels
        return guarded_validate(lambda: self.evaluate("val"), self.guard, val, self.cfg.train.monitor)

    # -- scoring -----------------------------------------------------------------
    @torch.no_grad()
    def predict(self, features: torch.Tensor) -> torch.Tensor:
        """Probabilities [N, T] for features [N, F]."""
        self.model.eval()
        return torch.sigmoid(self.model(features))

    def evaluate(self, split: str) -> dict[str, float]:
        gather = distributed.gather_rows if self.data.shards else None
        return evaluate_split(
            self.predict, self.data.splits[split], self.tasks, self.cfg.train.eval_batch_size, gather
        )

    def serving_model(self) -> tuple[torch.nn.Module, torch.Tensor]:
        """The model MLflow logs: feature ids [B, F] → probabilities [B, T], with training rows as its example."""
        from recrl_cli.nets.serving import scoring_model

        return scoring_model(self.model, self.data.splits["train"].features)

    # -- persistence ---------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])

    def export(self) -> dict[str, Any]:
        return {
            "base": self.base,
            "model_config": self.cfg.to_dict()["model"],
            "cardinalities": self.data.cardinalities,
            "tasks": self.tasks,
            "weights": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
        }


def load_mtl_predictor(exported: dict[str, Any], device: torch.device):
    """Rebuild an exported base and return ``features [N, F] -> probabilities [N, T]``."""
    from recrl_cli.config.loading import build_section

    cfg = build_section(MTLConfig, exported["model_config"], "model")
    model = build_base(exported["base"], exported["cardinalities"], len(exported["tasks"]), cfg)
    rebuild_item_text(model, cfg, exported["weights"])
    model = model.to(device)
    model.load_state_dict(exported["weights"])
    model.eval()

    @torch.no_grad()
    def predict(features: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(model(features))

    return predict


def supervised_builder(base: str):
    """``build`` callable of the registry for a given base name."""

    def build(cfg: RunConfig, data: PreparedData, device: torch.device) -> SupervisedMTL:
        return SupervisedMTL(base, cfg, data, device)

    return build
