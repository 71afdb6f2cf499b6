"""THE training loop: stages of epochs of batches, validation, early stopping, checkpoints, resume.

Vocabulary (used everywhere in recrl):
    step   one gradient update on one batch of B rows (an algorithm's ``update``).
    epoch  one pass over a stage's ``num_rows`` rows in batches.
    stage  a named phase with its own update rule (RMTL: pretrain, critics, polish).

Algorithms never iterate, checkpoint or log; they hand the trainer :class:`Stage` objects whose
``update`` maps a batch of row indices to a dict of scalar metrics. The trainer owns the rest, so
every algorithm gets the same progress display, MLflow logging and exact resume for free.

Exact resume: a checkpoint holds the algorithm state, the shuffling generator's state at the start
of the current epoch, the global RNG state (dropout) and the loop counters. Resuming replays the
epoch's permutation and skips the batches already done, so an interrupted-and-resumed run ends
with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Protocol

import torch

from recrl_cli.config.monitor import missing_monitor, monitor_score
from recrl_cli.data.tensors import batch_indices, num_batches
from recrl_cli.errors import DataError
from recrl_cli.training.checkpoint import LOAD_ERRORS, RETRAIN, error_detail, load_checkpoint, save_checkpoint

# progress(label, done, total, status=""): one bar per label ("train · epoch 2/5", "interact · iterations"); status
# is the text beside it (the epoch's running loss, the latest validation score).
ProgressFn = Callable[..., None]
MetricsFn = Callable[[dict[str, float], int], None]

MAIN_STAGE = "train"  # the one stage of a plain supervised loop (MTL bases, the simulator)


def stage_key(kind: str, stage: str, key: str) -> str:
    """The MLflow key of a stage's metric: ``<kind>/<stage>/<key>`` (``valid/polish/mean/auc``).

    The stage segment is left out for the stage named ``train`` (the one stage of a plain supervised loop), so
    that its keys read ``train/loss`` and ``valid/mean/auc``, not ``train/train/loss`` and ``valid/train/...``.
    """
    return f"{kind}/{key}" if stage == MAIN_STAGE else f"{kind}/{stage}/{key}"


class TrainingInterrupted(KeyboardInterrupt):
    """Raised after a stop request once a resumable checkpoint has been written.

    It is a ``KeyboardInterrupt`` so that trackers mark the run as killed, not failed.
    """

    def __init__(self, global_step: int, checkpoint: Path | None) -> None:
        super().__init__(f"interrupted at step {global_step}")
        self.global_step = global_step
        self.checkpoint = checkpoint


class Resumable(Protocol):
    """What the trainer needs from an algorithm to checkpoint it."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@dataclass
class Stage:
    """One training phase.

    Attributes:
        name: short name, used in metric keys (``train/<name>/loss``; see :func:`stage_key`).
        num_rows: rows that batches index into (a batch is a LongTensor [B] of row numbers).
        update: one gradient step on a batch; returns scalar metrics such as ``{"loss": 0.3}``.
        batch_size: B.
        max_epochs: upper bound on epochs.
        max_steps: stop after this many steps in the stage (0 = no limit).
        shuffle: draw a fresh permutation every epoch (else rows in stored order).
        validate: scores the validation split at each epoch end; returns metrics.
        monitor: key of ``validate``'s output early stopping selects on (maximised, or minimised for a logloss:
            :func:`~recrl_cli.config.monitor.monitor_score`); a key ``validate`` does not return is a ConfigError.
        patience: epochs without improvement before stopping (0 = never).
        snapshot / restore: copy out / put back the weights early stopping keeps (the best epoch).
        on_epoch_start: hook run before every epoch (and again when resuming mid-epoch).
        on_end: hook run once the stage is over and the best weights are back (e.g. to score the
            pretrained model before the next stage changes it); also re-run on resume.
        unit: what one pass counts on the progress bar: ``epoch`` (a bar per epoch, "epoch k/N") or
            ``iteration`` (RL loops: one epoch of ``num_rows`` iterations, one bar counting them).
    """

    name: str
    num_rows: int
    update: Callable[[torch.Tensor], dict[str, float]]
    batch_size: int
    max_epochs: int
    max_steps: int = 0
    shuffle: bool = True
    validate: Callable[[], dict[str, float]] | None = None
    monitor: str | None = None
    patience: int = 0
    snapshot: Callable[[], dict[str, Any]] | None = None
    restore: Callable[[dict[str, Any]], None] | None = None
    on_epoch_start: Callable[[], None] | None = None
    on_end: Callable[[], None] | None = None
    unit: str = "epoch"


@dataclass
class StopSignal:
    """Set ``requested`` (e.g. from a SIGINT handler) to stop at the next step boundary."""

    requested: bool = False


@dataclass
class LoopState:
    """Counters and bookkeeping saved in every checkpoint."""

    stage_index: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    stage_step: int = 0
    global_step: int = 0
    epoch_generator_state: torch.Tensor | None = None
    best_value: float = -math.inf
    bad_epochs: int = 0
    best_snapshot: dict[str, Any] | None = None
    epoch_sums: dict[str, float] = field(default_factory=dict)
    epoch_count: int = 0
    stage_done: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)


# What :meth:`Trainer.save` writes (``algorithm`` is the algorithm's own ``state_dict``).
RESUME_SCHEMA = {
    "algorithm": dict,
    "loop": dict,
    "generator": torch.Tensor,
    "torch_rng": torch.Tensor,
    "cuda_rng?": (list, tuple, type(None)),
}


class Trainer:
    """Runs stages in order with checkpoints every ``checkpoint_every`` steps and at epoch ends."""

    def __init__(
        self,
        algorithm: Resumable,
        stages: list[Stage],
        *,
        device: torch.device,
        seed: int,
        checkpoint_path: Path | None = None,
        checkpoint_every: int = 0,
        log_metrics: MetricsFn | None = None,
        progress: ProgressFn | None = None,
        stop: StopSignal | None = None,
        log_every: int = 20,
    ) -> None:
        self.algorithm = algorithm
        self.stages = stages
        self._epoch_started = time.perf_counter()
        self.device = device
        self.checkpoint_path = checkpoint_path
        self.checkpoint_every = checkpoint_every
        self.log_metrics = log_metrics or (lambda metrics, step: None)
        self.progress = progress
        self.stop = stop or StopSignal()
        self.log_every = log_every
        self.generator = torch.Generator().manual_seed(seed)
        self.state = LoopState()
        self._last_validation: dict[str, float] = {}  # shown beside the bar (not checkpointed)

    # ------------------------------------------------------------------ checkpoints
    def save(self) -> None:
        if self.checkpoint_path is None:
            return
        payload = {
            "algorithm": self.algorithm.state_dict(),
            "loop": copy.copy(self.state.__dict__),
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        }
        save_checkpoint(self.checkpoint_path, payload)

    def resume(self, path: Path) -> None:
        """Load a checkpoint written by :meth:`save` and continue from it in :meth:`fit`.

        A file that is not such a checkpoint, or one whose state does not fit this run's algorithm, is a
        one-line :class:`DataError`; the algorithm may then be half-loaded, so the run must not go on.
        """
        payload = load_checkpoint(path, RESUME_SCHEMA, "resume checkpoint")
        names = {f.name for f in fields(LoopState)}
        if set(payload["loop"]) != names:
            odd = sorted(set(payload["loop"]) ^ names)
            raise DataError(f"{path} is not a usable recrl resume checkpoint: its loop state differs in {odd}; "
                            f"{RETRAIN}")  # fmt: skip
        try:
            self.algorithm.load_state_dict(payload["algorithm"])
            self.generator.set_state(payload["generator"])
            torch.set_rng_state(payload["torch_rng"])
            if payload.get("cuda_rng") is not None and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(payload["cuda_rng"])
        except LOAD_ERRORS as exc:
            raise DataError(
                f"cannot resume from {path}: its state does not fit this run ({error_detail(exc)}); train again without --resume"
            ) from None
        self.state = LoopState(**payload["loop"])

    # ------------------------------------------------------------------ the loop
    def fit(self) -> list[dict[str, Any]]:
        """Run every stage to completion; returns the per-epoch history (validation metrics)."""
        while self.state.stage_index < len(self.stages):
            stage = self.stages[self.state.stage_index]
            if not self.state.stage_done:
                self._run_stage(stage)
            self._finish_stage(stage)
        return self.state.history

    def _run_stage(self, stage: Stage) -> None:
        st = self.state
        total_batches = num_batches(stage.num_rows, stage.batch_size)
        while st.epoch < stage.max_epochs and not self._step_limit_reached(stage):
            if st.batch_in_epoch == 0:
                st.epoch_generator_state = self.generator.get_state()
                st.epoch_sums, st.epoch_count = {}, 0
            else:  # resuming mid-epoch: replay the same permutation
                self.generator.set_state(st.epoch_generator_state)
            # Wall time of the epoch in this process (after a mid-epoch resume: of the part run here).
            self._epoch_started = time.perf_counter()
            if stage.on_epoch_start is not None:
                stage.on_epoch_start()
            gen = self.generator if stage.shuffle else None
            for idx in batch_indices(stage.num_rows, stage.batch_size, gen, self.device, st.batch_in_epoch):
                metrics = stage.update(idx)
                st.batch_in_epoch += 1
                st.stage_step += 1
                st.global_step += 1
                for key, value in metrics.items():
                    st.epoch_sums[key] = st.epoch_sums.get(key, 0.0) + float(value)
                st.epoch_count += 1
                if st.global_step % self.log_every == 0:
                    self.log_metrics(
                        {stage_key("train", stage.name, k): float(v) for k, v in metrics.items()},
                        st.global_step,
                    )
                if self.progress is not None:
                    self.progress(
                        self._label(stage), st.batch_in_epoch, total_batches, status=self._status(stage)
                    )
                if self.checkpoint_every and st.global_step % self.checkpoint_every == 0:
                    self.save()
                if self.stop.requested:
                    self.save()
                    raise TrainingInterrupted(st.global_step, self.checkpoint_path)
                if self._step_limit_reached(stage):
                    break
            if self._end_epoch(stage):
                break
        st.stage_done = True
        self.save()

    def _label(self, stage: Stage) -> str:
        """The bar's label: ``train · epoch 2/5``; an RL loop's ``interact · iterations`` (the bar counts them)."""
        if stage.unit == "epoch":
            return f"{stage.name} · epoch {self.state.epoch + 1}/{stage.max_epochs}"
        return f"{stage.name} · {stage.unit}s"

    def _status(self, stage: Stage) -> str:
        """Beside the bar: the running mean of the epoch's loss (or its first two metrics) and the latest
        validation score of the monitored metric (``loss 0.2113 · val mean/auc 0.6402``)."""
        st = self.state
        if not st.epoch_count:
            return ""
        keys = [k for k in st.epoch_sums if k == "loss"] or list(st.epoch_sums)[:2]
        parts = [f"{k} {st.epoch_sums[k] / st.epoch_count:.4g}" for k in keys]
        # The score itself, not the calibration guard's copy of it (guarded/<metric>: NaN for a rejected epoch).
        shown = (stage.monitor or "").removeprefix("guarded/")
        if shown in self._last_validation:
            parts.append(f"val {shown} {self._last_validation[shown]:.4f}")
        return " · ".join(parts)

    def _end_epoch(self, stage: Stage) -> bool:
        """Validate, track the best epoch and decide on early stopping. Returns True to stop."""
        st = self.state
        record: dict[str, Any] = {"stage": stage.name, "epoch": st.epoch + 1, "step": st.global_step}
        if st.epoch_count:
            means = {
                stage_key("train", stage.name, f"epoch_{k}"): v / st.epoch_count
                for k, v in st.epoch_sums.items()
            }
            record.update(means)
            self.log_metrics(means, st.global_step)
        stop = False
        if stage.validate is not None:
            val = stage.validate()
            self._last_validation = {
                k: v for k, v in val.items() if isinstance(v, float) and not math.isnan(v)
            }
            # A NaN (an epoch the calibration guard rejects: guarded/<monitor>) steers the selection below
            # but is not a measurement: it is left out of the logged curve instead of shown as a NaN point.
            shown = {
                stage_key("valid", stage.name, k): v
                for k, v in val.items()
                if not (isinstance(v, float) and math.isnan(v))
            }
            record.update(shown)
            self.log_metrics(shown, st.global_step)
            if stage.monitor is not None:
                if stage.monitor not in val:
                    raise missing_monitor(stage.monitor, val)
                value = monitor_score(stage.monitor, val[stage.monitor])
                if value > st.best_value:  # NaN never improves
                    st.best_value, st.bad_epochs = value, 0
                    if stage.snapshot is not None:
                        st.best_snapshot = stage.snapshot()
                else:
                    st.bad_epochs += 1
                    stop = stage.patience > 0 and st.bad_epochs >= stage.patience
        # Timings go to their own prefix: they are the only values that differ between identical runs.
        record["seconds"] = time.perf_counter() - self._epoch_started
        self.log_metrics({stage_key("time", stage.name, "epoch_seconds"): record["seconds"]}, st.global_step)
        st.history.append(record)
        st.epoch += 1
        st.batch_in_epoch = 0
        self.save()
        return stop

    def _step_limit_reached(self, stage: Stage) -> bool:
        return stage.max_steps > 0 and self.state.stage_step >= stage.max_steps

    def _finish_stage(self, stage: Stage) -> None:
        st = self.state
        if st.best_snapshot is not None and stage.restore is not None:
            stage.restore(st.best_snapshot)
        if stage.on_end is not None:
            stage.on_end()
        st.stage_index += 1
        st.epoch = st.batch_in_epoch = st.stage_step = st.bad_epochs = 0
        st.best_value, st.best_snapshot, st.stage_done = -math.inf, None, False
        st.epoch_sums, st.epoch_count = {}, 0
        self._last_validation = {}
