"""``recrl train simulator``: fit the user response model on prepared KuaiRand (hac_kuaisim.md §3.4-3.6).

One stage over the train split's rows: a batch is a LongTensor [B] of positions in the split, turned into
histories by tensor gathers (:func:`recrl_cli.sim.data.row_batch`). The loss is Σ_b mean_n BCE (plain
BCE-with-logits by default; the faithful switches of :mod:`recrl_cli.sim.config`) + λ·KuaiSim's reg. After
every epoch the validation split is scored: AUC per behaviour on the logits (what KuaiSim logs; the double
sigmoid does not change a ranking) and logloss on the probabilities the simulator samples from; early stopping
keeps the best ``train.monitor`` (default ``mean/auc``, the mean over behaviours whose AUC is defined).

Registry row (``recrl_cli/algorithms/registry.py``)::

    "simulator": AlgoSpec("simulator", SimulatorConfig, build_simulator, load_simulator_predictor,
                          "KuaiSim user response model (7 behaviours) for the whole-session env.", "simulator"),
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any

import torch

from recrl_cli.config.monitor import check_monitor_names
from recrl_cli.config.schema import RunConfig
from recrl_cli.data.kuairand_tensors import FeatureTable, RowTable, load_row_table, load_split_rows
from recrl_cli.data.prepare.kuairand import BEHAVIOURS
from recrl_cli.evaluation.metrics import auc, logloss
from recrl_cli.sim.config import LEGACY_SWITCHES, SimulatorConfig
from recrl_cli.sim.data import KuaiRandData, load_kuairand_data, row_batch
from recrl_cli.sim.play_time import play_metrics, play_time_loss
from recrl_cli.sim.response_model import UserResponseModel
from recrl_cli.sim.sequence import block_batch, make_blocks
from recrl_cli.training.trainer import Stage

# Scoring holds B·H·2d activations per layer: 4,096 rows x 100 x 128 floats = 210 MB, whatever
# train.eval_batch_size (sized for the MTL bases' flat rows) says.
MAX_EVAL_ROWS = 4096
MEAN_MIN_POSITIVES = 30  # positives a behaviour needs in a split to count in mean/auc and mean/logloss


class SimulatorAlgorithm:
    """The URM as a recrl algorithm (stages / evaluate / state / export).

    Args:
        cfg: the run config; ``cfg.model`` is a :class:`SimulatorConfig`.
        data: prepared KuaiRand on ``device``.
        device: where the model and the data live.
    """

    def __init__(self, cfg: RunConfig, data: KuaiRandData, device: torch.device) -> None:
        self.cfg, self.mcfg, self.data = cfg, cfg.model, data
        check_monitor_names(cfg.train.monitor, BEHAVIOURS, ("auc", "logloss"))  # behaviour_metrics' keys
        self.model = UserResponseModel(cfg.model, data.users, data.items).to(device)
        self.train_rows = data.splits["train"]
        rate = data.positive_rate("train")
        # §3.4: W = 1 on positives, N_pos/N_neg on negatives (KuaiSim stores hate's ratio negated and flips it back).
        self.neg_weight = (
            (rate / (1 - rate).clamp(min=1e-12)) if self.model.switches["pos_neg_weights"] else None
        )
        self.model.init_rates(rate)
        self.one_pass = not self.model.switches["per_row_window"]
        # One causal pass per block of H consecutive rows (recrl_cli.sim.sequence); a batch is then
        # batch_size // H blocks, i.e. about train.batch_size rows, as with per-row windows.
        self.blocks = (
            make_blocks(data.rows, self.train_rows, self.mcfg.history_length) if self.one_pass else None
        )
        taste = {id(p) for p in self.model.taste_parameters()}
        groups = [{"params": [p for p in self.model.parameters() if id(p) not in taste],
                   "weight_decay": cfg.train.weight_decay}]  # fmt: skip
        if taste:  # MF's rows: a larger step (each row is in few batches) and their own per-row L2 instead
            groups.append({"params": self.model.taste_parameters(), "weight_decay": 0.0,
                           "lr": cfg.train.lr * self.mcfg.taste_lr_scale})  # fmt: skip
        self.optimizer = torch.optim.Adam(groups, lr=cfg.train.lr)

    # -- training ----------------------------------------------------------------------------------------------
    def update(self, idx: torch.Tensor) -> dict[str, float]:
        """One Adam step on ``idx`` [B]: blocks (one causal pass each) or, per-row window, train-split rows."""
        if self.one_pass:
            return self._update_blocks(idx)
        batch = row_batch(
            self.data.rows, self.train_rows[idx], self.mcfg.history_length, self.mcfg.same_request
        )
        self.model.train()
        want_play = self.mcfg.play_time_coef > 0
        logits, play = self.model.forward_with_play(
            batch.user, batch.hist_items, batch.feedback, batch.mask, batch.target, play=want_play
        )
        bce = self.model.loss(logits[:, 0], batch.labels, self.neg_weight)
        loss, logs = bce, {}
        if play is not None:
            ce = play_time_loss(play[:, 0], batch.play_seconds, batch.labels[:, 0] > 0, self.model.play_edges)
            loss, logs = loss + self.mcfg.play_time_coef * ce, {"play_ce": ce.item()}
        if self.mcfg.l2_coef > 0:
            loss = loss + self.mcfg.l2_coef * self.model.l2_penalty(batch.user, batch.target)
        if self.mcfg.taste_l2 > 0:
            loss = loss + self.mcfg.taste_l2 * self.model.taste_penalty(batch.user, batch.target[:, 0])
        return self._step(loss, bce, logs)

    def _update_blocks(self, idx: torch.Tensor) -> dict[str, float]:
        """One Adam step on blocks ``idx`` [nb]: every valid row of a block scored from one causal pass."""
        blocks = self.blocks
        b = block_batch(self.data.rows, blocks.start[idx], blocks.length[idx], blocks.block_length)
        self.model.train()
        want_play = self.mcfg.play_time_coef > 0
        logits, play = self.model.forward_blocks(
            b.user, b.tok_items, b.tok_feedback, b.targets, play=want_play
        )
        valid = b.valid
        labels = b.labels[valid]
        bce = self.model.loss(logits[valid], labels, self.neg_weight)
        loss, logs = bce, {}
        if play is not None:
            ce = play_time_loss(play[valid], b.play_seconds[valid], labels[:, 0] > 0, self.model.play_edges)
            loss, logs = loss + self.mcfg.play_time_coef * ce, {"play_ce": ce.item()}
        targets = b.targets[valid]
        users = b.user[:, None].expand_as(b.targets)[valid]
        if self.mcfg.l2_coef > 0:
            loss = loss + self.mcfg.l2_coef * self.model.l2_penalty(b.user, targets)
        if self.mcfg.taste_l2 > 0:
            loss = loss + self.mcfg.taste_l2 * self.model.taste_penalty(users, targets)
        return self._step(loss, bce, logs)

    def _step(self, loss: torch.Tensor, bce: torch.Tensor, logs: dict[str, float]) -> dict[str, float]:
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return {"loss": loss.item(), "bce": bce.item(), **logs}

    def stages(self) -> list[Stage]:
        train = self.cfg.train
        return [Stage(
            name="train", num_rows=len(self.blocks) if self.one_pass else len(self.train_rows), update=self.update,
            batch_size=max(1, train.batch_size // self.mcfg.history_length) if self.one_pass else train.batch_size,
            max_epochs=train.epochs, max_steps=train.max_steps, shuffle=train.shuffle,
            validate=lambda: self.evaluate("val"), monitor=train.monitor, patience=train.patience,
            snapshot=lambda: copy.deepcopy(self.model.state_dict()), restore=self.model.load_state_dict,
        )]  # fmt: skip

    # -- scoring -----------------------------------------------------------------------------------------------
    def predict(self, rows: torch.Tensor) -> torch.Tensor:
        """The probabilities the simulator samples from, [N, 7], for row indices [N] of the prepared row table."""
        return self.model.probabilities(score_rows(self.model, self.data.rows, rows, self._chunk))

    def evaluate(self, split: str) -> dict[str, float]:
        """``<behaviour>/auc``, ``<behaviour>/logloss`` and their means over behaviours on ``split``."""
        return evaluate_rows(self.model, self.data.rows, self.data.splits[split], self._chunk)

    @property
    def _chunk(self) -> int:
        return max(1, min(self.cfg.train.eval_batch_size, MAX_EVAL_ROWS))

    def extra_metrics(self) -> dict[str, float]:
        """The world check (:mod:`recrl_cli.sim.check`) of the trained model, as ``world/...`` metrics; the
        check itself stays in ``self.world_check`` for the command to print."""
        if not self.mcfg.check_steps:
            return {}
        from recrl_cli.mtf.ranker import built_in_ranker
        from recrl_cli.sim.check import check_world, find_truth

        truth = find_truth(self.data.directory, self.mcfg.check_truth)
        # The fusion rows fuse what a fusion run without --ranker fuses (the simulator's taste-free view).
        ranker, name = built_in_ranker(self.model, "")
        self.world_check = check_world(self.model, self.data, truth_dir=truth, steps=self.mcfg.check_steps,
                                       seed=self.cfg.train.seed, ranker=None if ranker is self.model else ranker,
                                       ranker_name=name)  # fmt: skip
        return self.world_check.metrics()

    # -- persistence -------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])

    def export(self) -> dict[str, Any]:
        """Weights (feature tables included), architecture, the data it was fitted on and its positive rates."""
        return export_model(self.model, self.data)


@torch.no_grad()
def score_rows(
    model: UserResponseModel, table: RowTable, rows: torch.Tensor, chunk: int = MAX_EVAL_ROWS
) -> torch.Tensor:
    """Eval-mode logits [N, 7] of row indices ``rows`` [N] of ``table``, ``chunk`` rows per forward pass."""
    return score_rows_with_play(model, table, rows, chunk, play=False)[0]


@torch.no_grad()
def score_rows_with_play(
    model: UserResponseModel,
    table: RowTable,
    rows: torch.Tensor,
    chunk: int = MAX_EVAL_ROWS,
    play: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Eval-mode (logits [N, 7], play-time bin logits [N, M + 1] or None) of ``rows`` [N] of ``table``."""
    model.eval()
    cfg = model.cfg
    parts, play_parts = [], []
    for start in range(0, len(rows), chunk):
        b = row_batch(table, rows[start : start + chunk], cfg.history_length, cfg.same_request)
        z, p = model.forward_with_play(b.user, b.hist_items, b.feedback, b.mask, b.target, play=play)
        parts.append(z[:, 0])
        if p is not None:
            play_parts.append(p[:, 0])
    logits = torch.cat(parts) if parts else torch.zeros(0, len(BEHAVIOURS), device=rows.device)
    return logits, (torch.cat(play_parts) if play_parts else None)


def evaluate_rows(
    model: UserResponseModel, table: RowTable, rows: torch.Tensor, chunk: int = MAX_EVAL_ROWS
) -> dict[str, float]:
    """:func:`behaviour_metrics` of the model on ``rows`` [N] of ``table``, and the play-time head's
    :func:`recrl_cli.sim.play_time.play_metrics` when the model has one."""
    z, play = score_rows_with_play(model, table, rows, chunk)
    probs = model.probabilities(z)
    out = behaviour_metrics(z, probs, table.labels[rows].float())
    if play is not None and len(rows):
        clicked = table.labels[rows, 0] > 0
        out |= play_metrics(play, torch.sigmoid(z[:, 0]), table.play_seconds[rows], clicked, model.play_edges)
    return out


def behaviour_metrics(logits: torch.Tensor, probs: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """AUC on logits and logloss on probs per behaviour (all [N, 7]); ``mean/*`` averages the behaviours with
    at least ``MEAN_MIN_POSITIVES`` positives in the split (all of them when none has): on 5 held-out rows per
    user, KuaiRand-Pure's forward / follow / hate have a handful of positives, whose AUC is noise that would
    drive early stopping (the default monitor is ``mean/auc``)."""
    out: dict[str, float] = {}
    counted = labels.sum(0) >= MEAN_MIN_POSITIVES
    if not bool(counted.any()):
        counted = torch.ones_like(counted)
    for j, name in enumerate(BEHAVIOURS):
        out[f"{name}/auc"] = auc(logits[:, j], labels[:, j])
        out[f"{name}/logloss"] = logloss(probs[:, j], labels[:, j])
    for kind in ("auc", "logloss"):
        values = torch.tensor([out[f"{b}/{kind}"] for b in BEHAVIOURS], dtype=torch.float64)
        out[f"mean/{kind}"] = float(values[counted.cpu()].nanmean())
    return out


def export_model(model: UserResponseModel, data: KuaiRandData) -> dict[str, Any]:
    """A self-contained export: ``load_response_model(export_model(m, d))`` rebuilds ``m`` exactly."""
    return {
        "model_config": dataclasses.asdict(model.cfg),
        "tasks": list(BEHAVIOURS),
        "users": {"names": model.user_names, "cardinalities": model.user_cards},
        "items": {
            "names": model.item_names,
            "cardinalities": model.item_cards,
            "tag_cardinality": model.tag_cardinality,
        },
        "weights": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "positive_rate": data.positive_rate("train").tolist(),
        "prepared_dir": str(data.directory),
        "dataset_fingerprint": data.fingerprint,
    }


def load_response_model(exported: dict[str, Any], device: torch.device | str = "cpu") -> UserResponseModel:
    """Rebuild an exported response model on ``device``, in eval mode."""
    from recrl_cli.config.loading import build_section

    # Simulators exported before the play-time head existed carry no edges in their config: they have none.
    # ... and those exported before the one-pass default were KuaiSim's per-row window without taste.
    legacy = {"play_time_edges": (), **LEGACY_SWITCHES}
    cfg = build_section(SimulatorConfig, {**legacy, **exported["model_config"]}, "model")
    w = exported["weights"]
    users = FeatureTable(names=exported["users"]["names"], ids=torch.zeros_like(w["user_features"]),
                         cardinalities=exported["users"]["cardinalities"])  # fmt: skip
    items = FeatureTable(names=exported["items"]["names"], ids=torch.zeros_like(w["item_features"]),
                         cardinalities=exported["items"]["cardinalities"], tags=torch.zeros_like(w["item_tags"]),
                         tag_cardinality=exported["items"]["tag_cardinality"])  # fmt: skip
    model = UserResponseModel(cfg, users, items)
    model.load_state_dict(w)
    return model.to(device).eval()


def load_simulator_predictor(exported: dict[str, Any], device: torch.device):
    """``AlgoSpec.load_predictor``: returns ``rows [N] -> probabilities [N, 7]`` where ``rows`` index the row table
    of the prepared directory the model was trained on (read once, on the first call)."""
    model = load_response_model(exported, device)
    tables: dict[str, RowTable] = {}

    def predict(rows: torch.Tensor) -> torch.Tensor:
        if "rows" not in tables:
            tables["rows"] = load_row_table(Path(exported["prepared_dir"]), device)
        return model.probabilities(score_rows(model, tables["rows"], rows.to(device)))

    return predict


def evaluate_saved_simulator(exported: dict[str, Any], prepared_dir: Path, split: str,
                             device: torch.device | str = "cpu") -> dict[str, float]:  # fmt: skip
    """``recrl evaluate`` for a saved simulator: :func:`behaviour_metrics` on ``split`` of ``prepared_dir``."""
    model = load_response_model(exported, device)
    rows = load_split_rows(Path(prepared_dir), split, device)
    return evaluate_rows(model, load_row_table(Path(prepared_dir), device), rows)


def build_simulator(cfg: RunConfig, data: Any, device: torch.device) -> SimulatorAlgorithm:
    """``AlgoSpec.build``. ``data`` is a :class:`KuaiRandData`; anything else (the pipeline's RetailRocket
    loader has no KuaiRand branch yet) makes it load ``cfg.data.prepared_dir`` itself."""
    if not isinstance(data, KuaiRandData):
        data = load_kuairand_data(Path(cfg.data.prepared_dir), device)
    return SimulatorAlgorithm(cfg, data, device)
