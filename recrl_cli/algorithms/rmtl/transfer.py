"""Critic transfer (paper §6.2): polish one base with the critics an earlier RMTL run fitted against another.

An RMTL run's ``model.pt`` (written by the pipeline from :meth:`RMTL.export`) carries its critics under
``exported["critics"]``: the architecture, the context flag, the feature names and tasks they were fitted on, and
the online weights. Any base can be weighted by any critic (the critic never reads the actor), so the only
compatibility conditions are the same tasks and the same feature vocabularies.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from recrl_cli.algorithms.rmtl.critics import TaskCritics
from recrl_cli.algorithms.rmtl.mdp import critic_cardinalities
from recrl_cli.algorithms.saved import describe, download_saved_model, read_saved_model
from recrl_cli.errors import ConfigError, DataError
from recrl_cli.tracking.base import Tracker
from recrl_cli.training.checkpoint import LOAD_ERRORS, error_detail

DEFAULT_CACHE = Path("runs") / "critics"


def resolve_critics_source(ref: str, tracker: Tracker, cache_dir: Path = DEFAULT_CACHE) -> Path:
    """A local ``model.pt`` for ``--critics``: an existing file, a run directory holding one, or an MLflow run id.

    A run id's ``model/model.pt`` artifact is downloaded to ``cache_dir/<run id>/model.pt``: a stable path, so the
    resolved config (and with it the run key that ``--resume`` looks up) is the same on every call.
    """
    path = Path(ref)
    if path.is_dir():
        path = path / "model.pt"
    if path.is_file():
        return path
    if not ref or path.suffix or "/" in ref or "\\" in ref:
        raise ConfigError(f"--critics: no model file at {ref!r}")
    target = cache_dir / ref / "model.pt"
    if target.is_file():
        return target
    created = [d for d in (target.parent, *target.parent.parents) if not d.exists()]
    try:
        downloaded = download_saved_model(tracker, ref, target.parent)  # TrackingError if unknown
        if downloaded != target:
            downloaded.replace(target)
        read_exported_critics(target)  # a run's artifact is checked like any file before it is kept
    except BaseException:
        # Nothing half-downloaded or refused stays in the cache (a later call would trust it).
        target.unlink(missing_ok=True)
        for directory in created:  # innermost first; only the empty directories this call made
            try:
                directory.rmdir()
            except OSError:
                break
        raise
    return target


def read_exported_critics(source: str | Path) -> dict[str, Any]:
    """The ``critics`` entry of a saved RMTL model (a model.pt file or its run directory); ConfigError if none."""
    path = Path(source)
    if path.is_dir():
        path = path / "model.pt"
    if not path.is_file():
        raise ConfigError(
            f"model.critics: no model file at {str(source)!r} (an MLflow run id must be resolved to a file first)"
        )
    try:
        payload = read_saved_model(path)
    except DataError as exc:
        raise ConfigError(f"model.critics: {exc}") from None
    critics = payload["exported"].get("critics")
    if not critics:
        raise ConfigError(f"model.critics: {path} holds no RMTL critics ({describe(payload)})")
    return critics


def check_compatible(
    critics: dict[str, Any],
    feature_names: Sequence[str],
    cardinalities: Sequence[int],
    tasks: Sequence[str],
    history_length: int = 0,
) -> None:
    """ConfigError (one line) unless saved critics fit data with these features and tasks."""
    if list(critics["tasks"]) != list(tasks):
        raise ConfigError(
            f"model.critics were fitted for tasks {list(critics['tasks'])}, this data has {list(tasks)}"
        )
    # Critics read the history summary only when both they and this data have one (older critics: none).
    history = history_length if critics.get("history_length", 0) else 0
    expected = critic_cardinalities(cardinalities, len(tasks), bool(critics["context"]), history)
    saved_names, saved_cards = list(critics["feature_names"]), list(critics["arch"]["cardinalities"])
    if saved_names != list(feature_names) or saved_cards != expected:
        mismatch = next(
            (f"'{n}' has {a} ids there, {b} here" for n, a, b in zip(feature_names, saved_cards, cardinalities, strict=False)
             if a != b),
            f"features {saved_names} vs {list(feature_names)}",
        )  # fmt: skip
        raise ConfigError(f"model.critics do not fit this dataset's feature vocabularies: {mismatch}")


def load_critics(
    source: str | Path,
    *,
    feature_names: Sequence[str],
    cardinalities: Sequence[int],
    tasks: Sequence[str],
    device: torch.device,
    history_length: int = 0,
) -> tuple[TaskCritics, bool]:
    """Rebuild saved critics on ``device`` after checking them; returns (critics, their context flag)."""
    saved = read_exported_critics(source)
    try:
        check_compatible(saved, feature_names, cardinalities, tasks, history_length)
        critics = TaskCritics.from_arch(saved["arch"]).to(device)
        critics.load_state_dict(saved["weights"])
    except LOAD_ERRORS as exc:
        raise ConfigError(
            f"model.critics: the critics saved in {source} cannot be rebuilt ({error_detail(exc)})"
        ) from None
    return critics, bool(saved["context"])


def export_critics(
    critics: TaskCritics,
    context: bool,
    feature_names: Sequence[str],
    tasks: Sequence[str],
    history_length: int = 0,
) -> dict[str, Any]:
    """What :func:`load_critics` reads back (weights on the CPU)."""
    return {
        "arch": dict(critics.arch),
        "context": context,
        "history_length": history_length if context else 0,
        "feature_names": list(feature_names),
        "tasks": list(tasks),
        "weights": {k: v.detach().cpu() for k, v in critics.state_dict().items()},
    }
