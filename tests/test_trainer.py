"""The training loop: cadence, early stopping with best restore, step limits, and exact resume."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch

from recrl_cli.errors import ConfigError
from recrl_cli.training.trainer import Stage, StopSignal, Trainer, TrainingInterrupted


class ToyAlgorithm:
    """Logistic regression with dropout on fixed random data: small but stochastic like the real ones."""

    def __init__(self, seed: int = 0, rows: int = 200) -> None:
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(123)
        self.x = torch.randn(rows, 5, generator=gen)
        self.y = (self.x[:, 0] + 0.3 * torch.randn(rows, generator=gen) > 0).float()
        self.model = torch.nn.Sequential(torch.nn.Dropout(0.3), torch.nn.Linear(5, 1))
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=0.05)
        self.seen: list[torch.Tensor] = []

    def update(self, idx: torch.Tensor) -> dict[str, float]:
        self.seen.append(idx.clone())
        self.model.train()
        logits = self.model(self.x[idx]).squeeze(-1)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, self.y[idx])
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return {"loss": loss.item()}

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "opt": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["opt"])

    def stage(self, **kwargs: Any) -> Stage:
        defaults = dict(name="fit", num_rows=len(self.y), update=self.update, batch_size=32, max_epochs=4)
        defaults.update(kwargs)
        return Stage(**defaults)


def weights(algo: ToyAlgorithm) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in algo.model.parameters()])


def make_trainer(algo: ToyAlgorithm, tmp_path, stages=None, **kwargs: Any) -> Trainer:
    return Trainer(
        algo, stages or [algo.stage()], device=torch.device("cpu"), seed=7,
        checkpoint_path=tmp_path / "ckpt.pt", **kwargs,
    )  # fmt: skip


def test_every_row_once_per_epoch_and_metrics_logged(tmp_path):
    algo = ToyAlgorithm()
    logged: list[tuple[dict, int]] = []
    trainer = make_trainer(algo, tmp_path, log_metrics=lambda m, s: logged.append((m, s)), log_every=5)
    history = trainer.fit()
    assert len(history) == 4
    steps_per_epoch = 7  # ceil(200 / 32)
    assert len(algo.seen) == 4 * steps_per_epoch
    for epoch in range(4):
        rows = torch.cat(algo.seen[epoch * steps_per_epoch : (epoch + 1) * steps_per_epoch])
        assert sorted(rows.tolist()) == list(range(200))
    assert not torch.equal(algo.seen[0], algo.seen[steps_per_epoch])  # reshuffled
    step_logs = [s for m, s in logged if "train/fit/loss" in m]
    assert step_logs == [5, 10, 15, 20, 25]
    assert any("train/fit/epoch_loss" in m for m, _ in logged)


def test_unshuffled_keeps_order(tmp_path):
    algo = ToyAlgorithm()
    make_trainer(algo, tmp_path, stages=[algo.stage(shuffle=False, max_epochs=1)]).fit()
    assert torch.cat(algo.seen).tolist() == list(range(200))


def test_max_steps_stops_mid_epoch(tmp_path):
    algo = ToyAlgorithm()
    make_trainer(algo, tmp_path, stages=[algo.stage(max_steps=10)]).fit()
    assert len(algo.seen) == 10


def early_stopping_stage(
    algo: ToyAlgorithm, monitor: str, values: list[float]
) -> tuple[Stage, list[torch.Tensor]]:
    """A patience-2 stage validating ``{monitor: values[epoch]}``, and the weights each kept snapshot held."""
    scores, kept = iter(values), []

    def snapshot() -> dict:
        kept.append(weights(algo).clone())
        return copy.deepcopy(algo.model.state_dict())

    stage = algo.stage(
        max_epochs=len(values), validate=lambda: {monitor: next(scores)}, monitor=monitor, patience=2,
        snapshot=snapshot, restore=algo.model.load_state_dict,
    )  # fmt: skip
    return stage, kept


def test_early_stopping_restores_best_epoch(tmp_path):
    algo = ToyAlgorithm()
    stage, snapshots = early_stopping_stage(algo, "auc", [0.5, 0.9, 0.7, 0.6, 0.95])
    history = make_trainer(algo, tmp_path, stages=[stage]).fit()
    assert [h["valid/fit/auc"] for h in history] == [0.5, 0.9, 0.7, 0.6]  # stopped after 2 bad epochs
    assert torch.equal(weights(algo), snapshots[-1])  # best (epoch 2) weights restored


def test_a_logloss_monitor_is_minimised_not_maximised(tmp_path):
    algo = ToyAlgorithm()
    stage, kept = early_stopping_stage(algo, "mean/logloss", [0.30, 0.20, 0.25, 0.28])
    history = make_trainer(algo, tmp_path, stages=[stage]).fit()
    assert len(history) == 4 and len(kept) == 2  # epochs 1 and 2 improved (0.30, then 0.20); 3 and 4 did not
    assert torch.equal(weights(algo), kept[-1])  # the lowest-logloss epoch is restored


def test_a_monitor_the_validation_lacks_is_a_config_error(tmp_path):
    algo = ToyAlgorithm()
    stage = algo.stage(max_epochs=2, validate=lambda: {"click/auc": 0.6, "mean/auc": 0.6}, monitor="cart/auc")
    with pytest.raises(
        ConfigError, match="'cart/auc' is not a validation metric of this run; it has click/auc, mean/auc"
    ):
        make_trainer(algo, tmp_path, stages=[stage]).fit()


def test_stages_run_in_order(tmp_path):
    algo = ToyAlgorithm()
    order: list[str] = []
    stages = [
        algo.stage(name="a", max_epochs=1, on_epoch_start=lambda: order.append("a")),
        algo.stage(name="b", max_epochs=2, on_epoch_start=lambda: order.append("b")),
    ]
    history = make_trainer(algo, tmp_path, stages=stages).fit()
    assert order == ["a", "b", "b"]
    assert [h["stage"] for h in history] == ["a", "b", "b"]


@pytest.mark.parametrize("stop_at", [3, 7, 16])  # mid-epoch, exactly at an epoch end, in stage two
def test_interrupt_and_resume_is_exact(tmp_path, stop_at):
    def build(algo: ToyAlgorithm) -> list[Stage]:
        return [algo.stage(name="one", max_epochs=2), algo.stage(name="two", max_epochs=1, batch_size=50)]

    reference = ToyAlgorithm(seed=1)
    make_trainer(reference, tmp_path / "ref", stages=build(reference), checkpoint_every=4).fit()

    interrupted = ToyAlgorithm(seed=1)
    stop = StopSignal()
    trainer = make_trainer(
        interrupted, tmp_path / "run", stages=build(interrupted), checkpoint_every=4, stop=stop
    )
    original_update = interrupted.update

    def update_then_stop(idx: torch.Tensor) -> dict[str, float]:
        out = original_update(idx)
        if len(interrupted.seen) == stop_at:
            stop.requested = True
        return out

    interrupted.update = update_then_stop
    for stage in trainer.stages:
        stage.update = update_then_stop
    with pytest.raises(TrainingInterrupted) as info:
        trainer.fit()
    assert info.value.global_step == stop_at

    resumed = ToyAlgorithm(seed=99)  # different init: everything must come from the checkpoint
    trainer2 = make_trainer(resumed, tmp_path / "run", stages=build(resumed))
    trainer2.resume(tmp_path / "run" / "ckpt.pt")
    trainer2.fit()
    assert torch.equal(weights(resumed), weights(reference))
    assert len(interrupted.seen) + len(resumed.seen) == len(reference.seen)


def test_the_bar_shows_epoch_k_of_n_the_running_loss_and_the_latest_validation_score(tmp_path):
    algo = ToyAlgorithm()
    calls: list[tuple[str, int, int, str]] = []
    scores = iter([0.61, 0.72])
    stage = algo.stage(max_epochs=2, validate=lambda: {"auc": next(scores)}, monitor="auc")
    make_trainer(
        algo, tmp_path, stages=[stage], progress=lambda *a, **k: calls.append((*a, k["status"]))
    ).fit()
    labels = list(dict.fromkeys(label for label, *_ in calls))
    assert labels == ["fit · epoch 1/2", "fit · epoch 2/2"]  # one bar per epoch
    first, second = ([c for c in calls if c[0] == label] for label in labels)
    assert first[-1][1:3] == (7, 7) and first[0][3].startswith("loss ")  # the epoch's running mean loss
    assert "val" not in first[-1][3]  # no validation yet in epoch 1
    assert second[0][3].endswith("· val auc 0.6100")  # epoch 2 shows epoch 1's validation score
    assert 0 < float(first[-1][3].split()[1]) < 1  # "loss 0.6931"


def test_an_iteration_loop_is_labelled_by_iterations_not_epoch_1(tmp_path):
    algo = ToyAlgorithm()
    calls: list[tuple] = []
    stage = algo.stage(
        name="interact", batch_size=1, num_rows=5, max_epochs=1, shuffle=False, unit="iteration"
    )
    make_trainer(algo, tmp_path, stages=[stage], progress=lambda *a, **k: calls.append(a)).fit()
    assert calls == [("interact · iterations", k, 5) for k in range(1, 6)]  # the bar counts k of N
