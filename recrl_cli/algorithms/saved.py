"""Saved models (``model.pt``): the one place that reads them back and checks what they hold.

``recrl train`` saves ``{"recrl_version", "algo", "config", "dataset_fingerprint", "exported"}`` where
``exported`` is the algorithm's :meth:`export`. Everything that reads a saved model (``recrl evaluate``,
``--simulator``, ``--ranker``, ``--critics``) goes through :func:`read_saved_model`: the file is read with
``weights_only=True`` (:mod:`recrl_cli.training.checkpoint`), then the top level and the export of the
algorithm's family are checked against the schemas below, so a foreign or damaged file is one line that
names what is missing, never a ``KeyError`` deep in a loader.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from recrl_cli.errors import DataError
from recrl_cli.training.checkpoint import RETRAIN, check_schema, read_checkpoint, type_name

MODEL_ARTIFACT = "model/model.pt"  # where the pipeline logs a run's saved model
_NONE = type(None)
_SEQ = (list, tuple)

MODEL_SCHEMA = {
    "algo": str,
    "exported": dict,
    "recrl_version?": str,
    "config?": dict,
    "dataset_fingerprint?": (str, _NONE),
}

_MTL_EXPORT = {"base": str, "model_config": dict, "cardinalities": _SEQ, "tasks": _SEQ, "weights": dict}
CRITICS_SCHEMA = {"arch": dict, "context": bool, "feature_names": _SEQ, "tasks": _SEQ, "weights": dict}

# The keys each family's loader reads from ``exported`` (by AlgoSpec.family).
EXPORT_SCHEMAS: dict[str, dict[str, Any]] = {
    "mtl base": _MTL_EXPORT,
    "rl-mtl": {**_MTL_EXPORT, "critics?": (dict, _NONE)},
    "simulator": {
        "model_config": dict,
        "tasks": _SEQ,
        "users": {"names": _SEQ, "cardinalities": _SEQ},
        "items": {"names": _SEQ, "cardinalities": _SEQ, "tag_cardinality": int},
        "weights": dict,
        "prepared_dir": str,
        "dataset_fingerprint": str,
    },
    "rl": {"agent": str, "agent_config": dict, "env_config": dict, "state": dict},
    "rl-list": {"agent": str, "config": dict, "state": (dict, _NONE)},
    "mtf": {"algo": str, "config": dict, "state": (dict, _NONE)},
}


def _check_weights(weights: dict[str, Any], where: str, key: str) -> None:
    for name, value in weights.items():
        if not isinstance(value, torch.Tensor):
            raise DataError(f"{where}: '{key}.{name}' is a {type_name(value)}, not a tensor; {RETRAIN}")


def read_saved_model(path: Path) -> dict[str, Any]:
    """The checked payload of a ``model.pt`` (see the module docstring); DataError (one line) otherwise."""
    from recrl_cli.algorithms.registry import ALGORITHMS

    path = Path(path)
    payload = read_checkpoint(path, "saved model")
    where = f"{path} is not a usable recrl saved model"
    if isinstance(payload, dict) and {"algorithm", "loop"} <= payload.keys() and "algo" not in payload:
        raise DataError(
            f"{path} is the resume checkpoint of an unfinished run, not a saved model: use the run's model.pt "
            "once the run has finished (or continue it with --resume)"
        )
    check_schema(payload, MODEL_SCHEMA, where)
    spec = ALGORITHMS.get(payload["algo"])
    if spec is None:
        raise DataError(
            f"{where}: it names an algorithm this recrl does not know ('{payload['algo']}'); {RETRAIN}"
        )
    exported = payload["exported"]
    check_schema(exported, EXPORT_SCHEMAS[spec.family], where, "exported.")
    if "weights" in exported:
        _check_weights(exported["weights"], where, "exported.weights")
    if isinstance(exported.get("critics"), dict):
        check_schema(exported["critics"], CRITICS_SCHEMA, where, "exported.critics.")
        _check_weights(exported["critics"]["weights"], where, "exported.critics.weights")
    return payload


def describe(payload: dict[str, Any]) -> str:
    """``a 'mmoe' model (mtl base)``: how error messages name what a file holds."""
    from recrl_cli.algorithms.registry import ALGORITHMS

    algo = payload.get("algo")
    spec = ALGORITHMS.get(algo) if isinstance(algo, str) else None
    return f"a '{algo}' model ({spec.family})" if spec else f"a '{algo}' model"


@contextmanager
def _no_progress_bar() -> Iterator[None]:
    """MLflow draws a download progress bar on stderr, which would break the one-line error of a refused file."""
    name = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
    before = os.environ.get(name)
    os.environ[name] = "false"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


def download_saved_model(tracker: Any, run_id: str, dst_dir: Path) -> Path:
    """The ``model.pt`` artifact of MLflow run ``run_id``, copied into ``dst_dir`` (not read or checked)."""
    with _no_progress_bar():
        return Path(tracker.download_artifact(run_id, MODEL_ARTIFACT, dst_dir))
