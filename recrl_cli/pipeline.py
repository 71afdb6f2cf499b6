"""One function per user action: train a configured run end to end, or evaluate a saved model.

``train_run`` is what ``recrl train``, ``recrl ablate`` and the tests all call: load the prepared
splits onto the device, build the algorithm from the registry, run the trainer (with resume),
evaluate on validation and test, and log everything through the injected tracker.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from recrl_cli import __version__
from recrl_cli.algorithms.registry import check_dataset, get_algorithm
from recrl_cli.algorithms.saved import download_saved_model, read_saved_model
from recrl_cli.config.schema import RunConfig
from recrl_cli.data.tensors import load_prepared, load_split
from recrl_cli.errors import ConfigError, DataError
from recrl_cli.evaluation.evaluator import evaluate_split
from recrl_cli.reporting import plot_channel_shares, plot_learning_curve, plot_rl_curves, write_history_csv
from recrl_cli.tracking.base import (
    PARENT_TAG,
    NullTracker,
    RunInfo,
    Tracker,
    dataset_record,
    flatten_params,
    git_info,
    is_run_id,
    run_id_of_name,
    source_tags,
)
from recrl_cli.training import distributed
from recrl_cli.training.checkpoint import LOAD_ERRORS, error_detail, save_checkpoint
from recrl_cli.training.device import resolve_device, seed_everything
from recrl_cli.training.trainer import ProgressFn, StopSignal, Trainer

EVAL_SPLITS = ("val", "test")


@dataclass(frozen=True)
class RunResult:
    """What a finished training run produced."""

    run_id: str
    run_dir: Path
    metrics: dict[str, float]  # "<split>/<task>/<metric>" on the best model
    history: list[dict[str, Any]]
    resumed: bool
    notes: tuple[
        str, ...
    ] = ()  # what the evaluation cannot support (e.g. an agent that does not beat popular)


DATA_PARALLEL_FAMILIES = ("mtl base", "rl-mtl")
MTL_FAMILIES = ("mtl base", "rl-mtl")  # feature-row models: RetailRocket's splits or KuaiRand's row view


def load_data(directory: Path, device: torch.device, algo: str | None = None):
    """The prepared dataset as device tensors, by the manifest's dataset and the algorithm: KuaiRand keeps row
    indices for the simulator and what acts in it, and becomes feature rows for the MTL bases and RMTL
    (:mod:`recrl_cli.data.kuairand_mtl`).

    With ``algo``, a dataset of another kind than the algorithm reads is a one-line error first. In a
    data-parallel run (a torchrun process group) only this process's share of each split is loaded.
    """
    from recrl_cli.data.manifest import read_manifest
    from recrl_cli.data.tensors import load_prepared_shard

    dataset = read_manifest(directory).get("dataset")
    if algo is not None:
        check_dataset(algo, dataset, directory)
    kuairand = dataset == "kuairand"
    rank, world = distributed.rank_world()
    if world > 1:
        if kuairand:
            raise ConfigError(
                "data-parallel training (--nproc > 1) reads RetailRocket's feature rows, not KuaiRand"
            )
        return load_prepared_shard(directory, device, rank, world)
    if kuairand and algo is not None and get_algorithm(algo).family in MTL_FAMILIES:
        from recrl_cli.data.kuairand_mtl import load_kuairand_mtl  # the MTL bases and RMTL: feature rows

        return load_kuairand_mtl(directory, device)
    if kuairand:
        from recrl_cli.sim.data import load_kuairand_data

        return load_kuairand_data(directory, device)
    return load_prepared(directory, device)


def run_key(cfg: RunConfig, dataset_fingerprint: str) -> str:
    """Stable directory name of a configuration: same config + data → same key (so --resume finds it).

    The device and thread count are left out: a run may be resumed on other hardware.
    """
    content = cfg.to_dict()
    content["train"] = {k: v for k, v in content["train"].items() if k not in ("device", "threads")}
    blob = json.dumps({"cfg": content, "data": dataset_fingerprint}, sort_keys=True, default=str)
    return f"{cfg.algo}-{hashlib.sha256(blob.encode()).hexdigest()[:12]}"


def _read_state(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "run.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _write_state(run_dir: Path, state: Mapping[str, Any]) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    tmp = run_dir / "run.json.tmp"
    tmp.write_text(json.dumps(state, indent=2))
    tmp.replace(run_dir / "run.json")


def train_run(
    cfg: RunConfig,
    tracker: Tracker,
    *,
    experiment: str,
    runs_root: Path = Path("runs"),
    resume: bool | str = False,
    run_name: str | None = None,
    nested: bool = False,
    extra_tags: Mapping[str, str] | None = None,
    progress: ProgressFn | None = None,
    stop: StopSignal | None = None,
) -> RunResult:
    """Train ``cfg`` end to end and log it as one MLflow run; see the module docstring.

    ``resume=True`` continues the interrupted run of the same configuration (an error if there is
    none); ``"auto"`` does so only when one exists.
    """
    spec = get_algorithm(cfg.algo)
    rank, world = distributed.rank_world()
    if world > 1 and spec.family not in DATA_PARALLEL_FAMILIES:
        raise ConfigError(f"--nproc > 1 trains the MTL bases and rmtl, not {cfg.algo} ({spec.family})")
    main = rank == 0  # only rank 0 writes run state, checkpoints, artifacts and MLflow records
    if not main:
        tracker = NullTracker()
    if world > 1 and stop is not None:
        stop = distributed.SyncedStop(stop)
    device = resolve_device(cfg.train.device)
    seed_everything(cfg.train.seed, cfg.train.threads)
    data = load_data(Path(cfg.data.prepared_dir), device, cfg.algo)
    key = run_key(cfg, data.fingerprint)
    run_dir = runs_root / key
    checkpoint = run_dir / "checkpoint.pt"
    state = _read_state(run_dir)
    if resume == "auto":  # studies: pick up a half-done run, otherwise start fresh
        resume = checkpoint.is_file() and state.get("status") == "running" and "mlflow_run_id" in state
    if resume:
        if state.get("status") == "finished" and "mlflow_run_id" in state:
            raise ConfigError(
                f"run {state['mlflow_run_id']} of this configuration already finished; nothing to resume"
            )
        if not checkpoint.is_file() or "mlflow_run_id" not in state:
            raise ConfigError(f"nothing to resume: no interrupted run of this configuration in {run_dir}")

    algorithm = spec.build(cfg, data, device)
    bind = getattr(algorithm, "bind_run_dir", None)  # algorithms that write files of their own (fusion logs)
    if bind is not None:
        bind(run_dir)
    distributed.barrier()  # every rank has read the run state before rank 0 replaces it
    if main and not resume and run_dir.exists():  # only once the new run is known to start
        shutil.rmtree(run_dir)
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)  # an unwritable --runs-dir fails before the MLflow run
    tracker_log = {}
    trainer = Trainer(
        algorithm,
        algorithm.stages(),
        device=device,
        seed=cfg.train.seed,
        checkpoint_path=checkpoint if main else None,
        checkpoint_every=cfg.train.checkpoint_every,
        log_metrics=lambda metrics, step: tracker_log["fn"](metrics, step),
        progress=progress,
        stop=stop,
    )
    if resume:
        trainer.resume(checkpoint)
    distributed.decorrelate_rng(cfg.train.seed, trainer.state.global_step)

    git = git_info()
    tags = {
        "recrl.version": __version__,
        "recrl.algo": cfg.algo,
        "recrl.dataset": cfg.data.dataset,
        "recrl.dataset_fingerprint": data.fingerprint,
        "recrl.device": str(device),
        "recrl.run_key": key,
        **git,
        **source_tags(f"recrl train {cfg.algo}", git),  # MLflow's Source column: command and git commit
        **(extra_tags or {}),
    }
    if world > 1:
        tags["recrl.world_size"] = str(world)
    with tracker.start_run(
        experiment=experiment,
        run_name=run_name or key,
        tags=tags,
        resume_run_id=state.get("mlflow_run_id") if resume else None,
        nested=nested,
    ) as run_id:
        tracker_log["fn"] = tracker.log_metrics
        if main:
            _write_state(run_dir, {"mlflow_run_id": run_id, "status": "running", "experiment": experiment})
        tracker.log_params(flatten_params(cfg.to_dict()))
        # The runs table's Dataset column: the prepared data by name, fingerprint and directory (once per run).
        if not resume:
            tracker.log_dataset(dataset_record(data.manifest, Path(cfg.data.prepared_dir)), "training")
        history = trainer.fit()
        metrics: dict[str, float] = {}
        for split in EVAL_SPLITS:
            for name, value in algorithm.evaluate(split).items():
                metrics[f"{split}/{name}"] = value
        # Algorithms that change a pretrained model (RMTL) also report the model before the change.
        extra = getattr(algorithm, "extra_metrics", None)
        if extra is not None:
            metrics.update(extra())
        tracker.log_metrics({f"eval/{k}": v for k, v in metrics.items()}, step=trainer.state.global_step)
        # RL algorithms: the learning curve per iteration bin, as MLflow metrics curve/<name> at that step.
        curves = algorithm.curves() if hasattr(algorithm, "curves") else {}
        for step, values in _by_step(curves).items():
            tracker.log_metrics({f"curve/{k}": v for k, v in values.items()}, step=step)
        notes = tuple(algorithm.notes()) if hasattr(algorithm, "notes") else ()
        if main:
            _save_artifacts(
                run_dir, cfg, data.manifest, algorithm.export(), history, metrics, tracker, curves
            )
            notes += _log_model(algorithm, cfg, data, tracker, trainer.state.global_step)
            _write_state(run_dir, {"mlflow_run_id": run_id, "status": "finished", "experiment": experiment})
    if main:
        checkpoint.unlink(missing_ok=True)  # the final model is kept; the resumable state is no longer needed
    return RunResult(run_id=run_id, run_dir=run_dir, metrics=metrics, history=history, resumed=bool(resume),
                     notes=notes)  # fmt: skip


def _log_model(algorithm: Any, cfg: RunConfig, data: Any, tracker: Tracker, step: int) -> tuple[str, ...]:
    """Log the algorithm's scoring model in MLflow's PyTorch flavour with a signature (the runs table's Models
    column, the model registry); a note when it could not be. Algorithms without ``serving_model`` (the RL
    families: their policies act in a simulator and score no rows) keep their state in ``model.pt`` only."""
    serving = getattr(algorithm, "serving_model", None)
    if serving is None:
        return ()
    module, example = serving()
    metadata = {"recrl_algo": cfg.algo, "tasks": list(data.tasks), "features": list(data.feature_names),
                "dataset_fingerprint": data.fingerprint}  # fmt: skip
    # Named after what it is (mmoe, rmtl-mmoe), not "model": in MLflow 3 a logged model shadows the run's artifact
    # folder of the same name in runs:/ URIs, and model/ holds recrl's own model.pt.
    name = "-".join(p for p in (cfg.algo, str(getattr(cfg.model, "base", "") or "")) if p)
    note = tracker.log_model(module, example, name=name, metadata=metadata, step=step)
    return (note,) if note else ()


def _by_step(curves: Mapping[str, list[tuple[int, float]]]) -> dict[int, dict[str, float]]:
    """{step: {name: value}} of curves given as {name: [(step, value), ...]} (one tracker call per step)."""
    out: dict[int, dict[str, float]] = {}
    for name, points in curves.items():
        for step, value in points:
            out.setdefault(int(step), {})[name] = float(value)
    return dict(sorted(out.items()))


def _save_artifacts(
    run_dir: Path,
    cfg: RunConfig,
    manifest: Mapping[str, Any],
    exported: dict[str, Any],
    history: list[dict[str, Any]],
    metrics: Mapping[str, float],
    tracker: Tracker,
    curves: Mapping[str, list[tuple[int, float]]] | None = None,
) -> None:
    model_path = run_dir / "model.pt"
    save_checkpoint(
        model_path,
        {
            "recrl_version": __version__,
            "algo": cfg.algo,
            "config": cfg.to_dict(),
            "dataset_fingerprint": manifest.get("fingerprint"),
            "exported": exported,
        },
    )
    (run_dir / "config.resolved.json").write_text(json.dumps(cfg.to_dict(), indent=2, default=list))
    (run_dir / "manifest.json").write_text(json.dumps(manifest, indent=2))
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    write_history_csv(history, run_dir / "history.csv")
    title = f"{cfg.algo} on {cfg.data.dataset}"
    if curves:  # RL: reward, depth and losses per iteration against the reference policies
        plot_rl_curves(curves, metrics, run_dir / "learning_curve.png", title=title)
    else:
        plot_learning_curve(history, run_dir / "learning_curve.png", title=title)
    # HRL-Rec: each policy's channel mix (metrics shares/<policy>/<channel>) as a picture beside the numbers.
    if plot_channel_shares(metrics, run_dir / "channel_shares.png", title=f"{title}: channel shares"):
        tracker.log_artifact(run_dir / "channel_shares.png")
    tracker.log_artifact(model_path, "model")
    for name in (
        "config.resolved.json",
        "manifest.json",
        "metrics.json",
        "history.csv",
        "learning_curve.png",
    ):
        tracker.log_artifact(run_dir / name)


def load_saved_model(source: str, tracker: Tracker | Callable[[], Tracker]) -> dict[str, Any]:
    """Read and check ``model.pt`` from a file, a run directory, an MLflow run id or run name (see
    :func:`recrl_cli.algorithms.saved.read_saved_model`).

    ``tracker`` may be a function that makes one: it is then called only for a run id, so that
    scoring a local file never opens (or creates) a tracking store. A downloaded artifact lives in a
    temporary directory that is removed whatever happens.
    """
    path = Path(source)
    if path.is_dir():
        path = path / "model.pt"
    if path.is_file():
        return read_saved_model(path)
    if path.suffix or "/" in source or "\\" in source or not source.strip():
        raise DataError(f"no saved model at {source}")
    if not hasattr(tracker, "download_artifact"):
        tracker = tracker()
    if not is_run_id(source):  # an MLflow run name: the one finished run of that name
        source = run_id_of_name(tracker, source, "")
    with tempfile.TemporaryDirectory() as tmp:
        local = download_saved_model(tracker, source, Path(tmp))
        try:
            return read_saved_model(local)
        except DataError as exc:  # name the run, not a temporary file that is gone once this returns
            raise DataError(str(exc).replace(str(local), f"the model of MLflow run {source}")) from None


def evaluate_saved(
    saved: Mapping[str, Any],
    *,
    prepared_dir: Path,
    split: str,
    device_name: str = "auto",
    batch_size: int = 65536,
) -> dict[str, float]:
    """Score a saved model (checked by :func:`load_saved_model`) on one split of a prepared dataset;
    returns ``<task>/<metric>`` metrics."""
    from recrl_cli.data.manifest import read_manifest

    algo = saved["algo"]
    spec = get_algorithm(algo)
    device = resolve_device(device_name)
    if spec.family not in ("mtl base", "rl-mtl", "simulator"):  # policies act in the simulator and score no
        spec.load_predictor(saved["exported"], device)  # rows: their load_predictor says so in one line
        raise ConfigError(f"{algo} does not score rows; its metrics are in its training run")
    manifest = read_manifest(prepared_dir)
    check_dataset(algo, manifest.get("dataset"), prepared_dir, doing="scores")
    exported = saved["exported"]
    if algo == "simulator":  # scores row indices of the KuaiRand row table, not feature rows
        from recrl_cli.sim.train import evaluate_saved_simulator, load_response_model

        if exported["dataset_fingerprint"] != manifest.get("fingerprint"):  # its ids index that data's tables
            raise DataError(f"the simulator was trained on other data than {prepared_dir} (dataset fingerprints "
                            "differ): score it on the prepared directory it was trained on")  # fmt: skip
        try:  # rebuilt once here so that only a model that does not fit its own export is reported as such
            load_response_model(exported, "cpu")
        except LOAD_ERRORS as exc:
            raise DataError(f"the saved simulator cannot be rebuilt ({error_detail(exc)}); it was written by an "
                            "older recrl or damaged: train it again") from None  # fmt: skip
        return evaluate_saved_simulator(exported, prepared_dir, split, device)
    trained_on = saved.get("config", {}).get("data", {}).get("dataset")
    if trained_on in ("retailrocket", "kuairand") and trained_on != manifest.get("dataset"):
        names = {"retailrocket": "RetailRocket", "kuairand": "KuaiRand"}
        raise DataError(f"this {algo} model was trained on prepared {names[trained_on]} data, but {prepared_dir} "
                        f"holds prepared {names.get(manifest.get('dataset'), manifest.get('dataset'))} data")  # fmt: skip
    # The MTL bases read KuaiRand as feature rows (data/kuairand_mtl.py): the view's tasks and fields count.
    kuairand = manifest.get("dataset") == "kuairand"
    if kuairand:
        from recrl_cli.data.kuairand_mtl import load_kuairand_mtl

        view = load_kuairand_mtl(prepared_dir, "cpu", splits=(split,))
        manifest = view.manifest
    if list(manifest["tasks"]) != list(exported["tasks"]):
        raise DataError(
            f"the model predicts {list(exported['tasks'])} but {prepared_dir} has tasks {manifest['tasks']}"
        )
    cards = [int(f["cardinality"]) for f in manifest["features"]]
    if "cardinalities" in exported and cards != list(exported["cardinalities"]):
        raise DataError(f"{prepared_dir} was prepared with other feature vocabularies than this model's data")
    try:
        predict = spec.load_predictor(exported, device)
    except LOAD_ERRORS as exc:
        raise DataError(f"the saved {algo} model cannot be rebuilt ({error_detail(exc)}); it was written by an "
                        "older recrl or damaged: train it again") from None  # fmt: skip
    data = (view.splits[split] if kuairand else load_split(prepared_dir, manifest, split)).to(device)
    with torch.no_grad():
        return evaluate_split(predict, data, manifest["tasks"], batch_size)


def evaluated_run(source: str, tracker: Tracker) -> RunInfo | None:
    """The MLflow run whose model ``source`` names (a run id or name, a run directory or its ``model.pt``), when this
    tracker's store holds it; None otherwise (a model file from elsewhere, another store)."""
    from recrl_cli.errors import ConfigError, TrackingError

    path = Path(source)
    run_id = source
    if path.exists():
        run_dir = path if path.is_dir() else path.parent
        run_id = _read_state(run_dir).get("mlflow_run_id", "") if (run_dir / "run.json").is_file() else ""
    if not run_id:
        return None
    try:
        if not path.exists() and not is_run_id(run_id):  # a run name (load_saved_model found the one run)
            run_id = run_id_of_name(tracker, run_id, "")
        return tracker.get_run(run_id)
    except (TrackingError, ConfigError):
        return None


def log_evaluation(
    tracker: Tracker,
    saved: Mapping[str, Any],
    source: str,
    *,
    split: str,
    prepared_dir: Path,
    metrics: Mapping[str, float],
    experiment: str | None = None,
) -> tuple[str, RunInfo | None]:
    """Log a ``recrl evaluate`` as an MLflow run: nested under the evaluated run when the store holds it (in its
    experiment), else a run of its own in ``experiment`` (default ``recrl/<dataset>``). Metrics are
    ``eval/<split>/<task>/<metric>`` (the keys of the training run), the prepared data is the run's input with
    the context ``evaluation``. Returns the new run's id and the evaluated run."""
    from recrl_cli.data.manifest import read_manifest

    manifest = read_manifest(prepared_dir)
    parent = evaluated_run(source, tracker)
    exp = experiment or (parent.experiment if parent else f"recrl/{manifest.get('dataset', 'data')}")
    git = git_info()
    tags = {
        "recrl.version": __version__,
        "recrl.algo": str(saved["algo"]),
        "recrl.evaluated": source,
        "recrl.dataset": str(manifest.get("dataset")),
        "recrl.dataset_fingerprint": str(manifest.get("fingerprint")),
        **git,
        **source_tags("recrl evaluate", git),
    }
    nested = parent is not None and parent.experiment == exp
    if nested:
        tags[PARENT_TAG] = parent.run_id  # the UI draws it under the run it scores
    name = f"evaluate {parent.name if parent else saved['algo']} [{split}]"
    with tracker.start_run(experiment=exp, run_name=name, tags=tags) as run_id:
        tracker.log_params(
            {"evaluate": {"source": source, "split": split, "data": Path(prepared_dir).as_posix()}}
        )
        tracker.log_dataset(dataset_record(manifest, Path(prepared_dir)), "evaluation")
        tracker.log_metrics({f"eval/{split}/{k}": v for k, v in metrics.items()})
    return run_id, parent if nested else None
