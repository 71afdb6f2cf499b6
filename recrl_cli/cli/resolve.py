"""Turn command-line options into a resolved :class:`RunConfig` and a tracker."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from recrl_cli.algorithms import catalog
from recrl_cli.config.fields import field_choices
from recrl_cli.config.loading import resolve_config
from recrl_cli.config.schema import DataConfig, RunConfig, TrainConfig
from recrl_cli.errors import ConfigError
from recrl_cli.tracking.base import Tracker, is_run_id, resolve_tracking_uri, run_id_of_name


def section_of(name: str, model_cls: type) -> str:
    """Which section a bare option name belongs to: model first, then train, then data."""
    for section, cls in (("model", model_cls), ("train", TrainConfig), ("data", DataConfig)):
        if name in {f.name for f in dataclasses.fields(cls)}:
            return f"{section}.{name}"
    raise ConfigError(
        f"unknown option --{name.replace('_', '-')}; see `recrl algos <algorithm>` for the options"
    )


def dotted_key(name: str, model_cls: type) -> str:
    """``train.lr`` stays as is; a bare ``lr`` is looked up with :func:`section_of`."""
    if "." in name:
        section, _, field = name.partition(".")
        classes = {"model": model_cls, "train": TrainConfig, "data": DataConfig}
        if section not in classes or field not in {f.name for f in dataclasses.fields(classes[section])}:
            raise ConfigError(f"unknown option --{name}")
        return name
    return section_of(name, model_cls)


def precheck_options(algo: str, extra: Sequence[tuple[str, str]], sets: Sequence[str]) -> None:
    """The one-line errors that need no config class, raised before torch is imported: an unknown option and a
    ``[train]`` option ``algo`` does not read (from the cached option tables; :func:`resolve_config` has the last
    word either way)."""
    from recrl_cli.algorithms.options import tables
    from recrl_cli.config.loading import check_train_field

    options = tables()
    names = {section: {r["name"] for r in options[section]} for section in ("train", "data")}
    names["model"] = {r["name"] for r in options["model"].get(algo, ())}
    if not names["model"]:
        return
    for name, _ in extra:
        if "." in name:
            section, _, field = name.partition(".")
            if section == "train":
                check_train_field(algo, field, f"--{name}")
            continue
        bare = name[3:] if name.startswith("no_") and name not in names["model"] | names["train"] else name
        if bare in names["model"] or bare in names["data"]:
            continue
        if bare in names["train"]:
            check_train_field(algo, bare, f"--{bare.replace('_', '-')}")
        else:
            raise ConfigError(
                f"unknown option --{name.replace('_', '-')}; see `recrl algos <algorithm>` for the options"
            )
    for text in sets:
        key = text.partition("=")[0].strip()
        if key.startswith("train."):
            check_train_field(algo, key[6:], f"--set {key}")


def negated_flag(name: str, value: str, model_cls: type) -> tuple[str, str]:
    """``--no-ptm`` → ``("ptm", "false")`` for a flag (a bool field) ``ptm``; any other option unchanged."""
    import typing

    if not name.startswith("no_") or "." in name:
        return name, value
    try:
        dotted_key(name, model_cls)
        return name, value  # a field that is itself called no_...
    except ConfigError:
        pass
    try:
        key = dotted_key(name[3:], model_cls)
    except ConfigError:
        return name, value  # reported as the unknown option it is
    section, _, field = key.partition(".")
    cls = {"model": model_cls, "train": TrainConfig, "data": DataConfig}[section]
    if typing.get_type_hints(cls).get(field) is not bool:
        raise ConfigError(f"--{name.replace('_', '-')}: --{field.replace('_', '-')} is not a flag")
    if value != "true":
        raise ConfigError(f"--{name.replace('_', '-')} takes no value, got '{value}'")
    return name[3:], "false"


def run_config_from_cli(
    algo: str,
    *,
    config: Path | None,
    sets: Sequence[str] | None,
    extra: Sequence[tuple[str, str]] = (),
    seed: int | None = None,
    device: str | None = None,
    data_dir: Path | None = None,
) -> RunConfig:
    """Resolve defaults < file < dedicated options < ``--<model option>`` < ``--set``."""
    catalog.entry(algo)  # an unknown name fails before torch is imported
    precheck_options(algo, extra, sets or ())
    from recrl_cli.algorithms.registry import get_algorithm

    spec = get_algorithm(algo)
    options: dict[str, Any] = {}
    if seed is not None:
        options["train.seed"] = seed
    if device is not None:
        options["train.device"] = device
    if data_dir is not None:
        options["data.prepared_dir"] = str(data_dir)
    for name, value in extra:
        name, value = negated_flag(name, value, spec.config_cls)
        options[dotted_key(name, spec.config_cls)] = value
    cfg = resolve_config(algo, spec.config_cls, config_file=config, options=options, overrides=sets or (),
                         defaults=catalog.data_defaults(algo))  # fmt: skip
    return with_manifest_dataset(cfg)


def with_manifest_dataset(cfg: RunConfig) -> RunConfig:
    """``data.dataset`` from the prepared directory's manifest when it names a known dataset.

    The manifest is the truth about what the directory holds, so `recrl train simulator --data
    datasets/prepared/kuairand-pure` needs no `--dataset kuairand`; without a readable manifest the
    configured value stays (and preflight reports the missing dataset).
    """
    import json

    manifest = Path(cfg.data.prepared_dir) / "manifest.json"
    try:
        dataset = json.loads(manifest.read_text()).get("dataset")
    except (OSError, ValueError, AttributeError):
        return cfg
    known = field_choices(DataConfig).get("dataset") or ()
    if dataset == cfg.data.dataset or dataset not in known:
        return cfg
    return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, dataset=dataset))


def make_tracker(tracking_uri: str | None) -> Tracker:
    """The MLflow tracker for ``--tracking-uri`` / ``$MLFLOW_TRACKING_URI`` / the project default."""
    from recrl_cli.tracking.mlflow_tracker import make_mlflow_tracker

    return make_mlflow_tracker(resolve_tracking_uri(tracking_uri))


def default_experiment(cfg: RunConfig, experiment: str | None) -> str:
    return experiment or f"recrl/{cfg.data.dataset}"


def preflight(cfg: RunConfig) -> None:
    """Checks that cost nothing and must fail before a tracking store, MLflow run or run directory
    is created: the device exists and the prepared dataset is there and intact."""
    from recrl_cli.algorithms.registry import check_dataset, required_dataset
    from recrl_cli.data.manifest import open_prepared
    from recrl_cli.training.device import resolve_device

    resolve_device(cfg.train.device)
    # The dataset the algorithm reads (the simulator and what acts in it: KuaiRand), whatever data.dataset says:
    # named in the hint for a missing directory, and a directory of the other kind is an error now.
    need = required_dataset(cfg.algo)
    manifest = open_prepared(Path(cfg.data.prepared_dir), need)
    check_dataset(cfg.algo, manifest.get("dataset"), cfg.data.prepared_dir)
    from recrl_cli.text.attach import preflight_text

    preflight_text(cfg.model, Path(cfg.data.prepared_dir))  # --item-encoder text: extra, model dir, item text
    check_saved_models(cfg)


def _fingerprint(manifest: Path) -> str | None:
    import json

    try:
        return json.loads(manifest.read_text()).get("fingerprint")
    except (OSError, ValueError, AttributeError):
        return None


def latest_run(runs_dir: Path, algo: str, prepared_dir: Path) -> Path | None:
    """The newest finished ``runs_dir/<algo>-<key>/`` trained on the data in ``prepared_dir`` (same fingerprint)."""
    import json

    want = _fingerprint(prepared_dir / "manifest.json")
    if want is None:
        return None
    found = []
    for run_dir in Path(runs_dir).glob(f"{algo}-*"):
        model = run_dir / "model.pt"
        try:
            finished = json.loads((run_dir / "run.json").read_text()).get("status") == "finished"
        except (OSError, ValueError, AttributeError):
            finished = False
        if finished and model.is_file() and _fingerprint(run_dir / "manifest.json") == want:
            found.append((model.stat().st_mtime_ns, run_dir))
    return max(found)[1] if found else None


def _is_run_id(ref: str) -> bool:
    """An MLflow run id (hex, no path separators or suffix) rather than a path."""
    return is_run_id(ref)


def is_run_name(ref: str) -> bool:
    """Whether a model reference names an MLflow run (``simulator-seed0``) rather than a file, a run id or ``latest``:
    no such file or directory, no path separator, no ``.pt`` ending."""
    from recrl_cli.mtf.ranker import BUILT_IN

    if not ref or ref in BUILT_IN or ref == "latest" or _is_run_id(ref) or Path(ref).exists():
        return False
    return "/" not in ref and "\\" not in ref and not ref.endswith(".pt")


def _reference_fields(cfg: RunConfig) -> tuple[str, ...]:
    """The model fields of ``cfg`` that name another run: ``simulator`` / ``ranker``, and RMTL's ``critics``."""
    names = catalog.MODEL_REFERENCES.get(catalog.entry(cfg.algo).family, ())
    return (*names, "critics") if cfg.algo == "rmtl" else names  # UnifiedRL's critics is a count


def resolve_run_names(cfg: RunConfig, tracker: Tracker) -> RunConfig:
    """``--simulator``, ``--ranker`` and ``--critics`` given as an MLflow run name become that run's id."""
    updates = {}
    for name in _reference_fields(cfg):
        ref = str(getattr(cfg.model, name, "") or "")
        if is_run_name(ref):
            updates[name] = run_id_of_name(tracker, ref, f"--{name}")
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, **updates)) if updates else cfg


def resolve_local_references(
    cfg: RunConfig, runs_dir: Path = Path("runs"), *, required: bool = True
) -> RunConfig:
    """``--simulator latest`` / ``--ranker latest``, and a ``--simulator`` not given, become the newest finished
    ``recrl train simulator`` run on the same prepared data in ``runs_dir`` (its run directory).

    With ``required``, a ``latest`` or missing simulator that cannot be found is a one-line error that says how to
    get one; without (``--dry-run``) it stays as given.
    """
    import json

    names = catalog.MODEL_REFERENCES.get(catalog.entry(cfg.algo).family, ())
    try:
        manifest = json.loads((Path(cfg.data.prepared_dir) / "manifest.json").read_text())
    except (OSError, ValueError):
        return cfg  # no prepared data there: preflight says so first
    if not isinstance(manifest, dict) or manifest.get("dataset") != catalog.family_of(cfg.algo).dataset:
        return cfg  # data of the wrong kind: preflight says so first
    updates: dict[str, str] = {}
    for name in names:
        ref = str(getattr(cfg.model, name, "") or "")
        if ref != "latest" and (ref or name != "simulator"):
            continue
        found = latest_run(runs_dir, "simulator", Path(cfg.data.prepared_dir))
        if found is not None:
            updates[name] = str(found)
        elif required:
            raise ConfigError(
                f"{cfg.algo} needs a trained simulator (--{name}): none trained on {cfg.data.prepared_dir} in "
                f"{runs_dir}/; train one with `recrl train simulator --data {cfg.data.prepared_dir}` or pass "
                f"--{name} RUN (a run directory, its model.pt, an MLflow run id or name, or latest)"
            )
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, **updates)) if updates else cfg


def check_saved_models(cfg: RunConfig) -> None:
    """Read and check the saved models a run builds on (``--simulator``, ``--ranker``, a local ``--critics``)
    now, so that a missing, unsafe, malformed or wrong kind of file fails before anything is tracked.
    (``--critics`` given as an MLflow run id is checked when it is downloaded, see resolve_references.)"""
    family = catalog.entry(cfg.algo).family
    model = cfg.model
    if family in ("rl", "rl-list", "mtf"):
        from recrl_cli.agents.algorithm import read_simulator
        from recrl_cli.mtf.mtl_ranker import read_ranker
        from recrl_cli.mtf.ranker import BUILT_IN

        for name in catalog.MODEL_REFERENCES[family]:
            ref = str(getattr(model, name, "") or "")
            if name == "ranker" and ref in BUILT_IN:
                continue  # no saved ranker: the simulator's taste-free view, or the simulator itself
            if (_is_run_id(ref) and not Path(ref).exists()) or is_run_name(ref):
                continue  # an MLflow run id or name: checked when it is downloaded (resolve_references)
            # A ranker may also be an MTL base / RMTL run trained on KuaiRand (mtf/mtl_ranker.py).
            (read_ranker if name == "ranker" else read_simulator)(ref, f"--{name}")
    used = cfg.algo == "rmtl" and getattr(model, "uses_critics", False)  # UnifiedRL's critics is a count
    critics = str(getattr(model, "critics", "") or "") if used else ""
    if critics and Path(critics).exists():
        from recrl_cli.algorithms.rmtl.transfer import read_exported_critics

        read_exported_critics(critics)


def resolve_references(cfg: RunConfig, tracker: Tracker, runs_dir: Path = Path("runs")) -> RunConfig:
    """Replace references to other runs in the model section by local files.

    RMTL's ``critics`` and the ``simulator`` / ``ranker`` of the agents, fusion and HRL-Rec (a model file, a run
    directory, an MLflow run id or run name): a run id is downloaded once to a fixed path under ``runs_dir/critics`` or
    ``runs_dir/simulators``, so the resolved config, and with it the run key that ``--resume`` looks up, is the
    same on every call. A run name (``simulator-seed0``) is first looked up as the one finished run of that name.
    """
    cfg = resolve_run_names(cfg, tracker)
    cfg = _download_simulators(cfg, tracker, runs_dir)
    ref = getattr(cfg.model, "critics", "") if cfg.algo == "rmtl" else ""  # UnifiedRL's critics is a count
    if not ref:
        return cfg
    from recrl_cli.algorithms.rmtl.transfer import resolve_critics_source

    local = str(resolve_critics_source(str(ref), tracker, Path(runs_dir) / "critics"))
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, critics=local))


def _download_simulators(cfg: RunConfig, tracker: Tracker, runs_dir: Path) -> RunConfig:
    """``--simulator`` / ``--ranker`` given as an MLflow run id: its model.pt, downloaded to a fixed path and checked."""
    names = catalog.MODEL_REFERENCES.get(catalog.entry(cfg.algo).family, ())
    updates: dict[str, str] = {}
    for name in names:
        ref = str(getattr(cfg.model, name, "") or "")
        if not _is_run_id(ref) or Path(ref).exists():
            continue
        from recrl_cli.agents.algorithm import read_simulator
        from recrl_cli.algorithms.saved import download_saved_model
        from recrl_cli.mtf.mtl_ranker import read_ranker

        target = Path(runs_dir) / "simulators" / ref / "model.pt"
        if not target.is_file():
            try:
                downloaded = download_saved_model(tracker, ref, target.parent)  # TrackingError if unknown
                if downloaded != target:
                    downloaded.replace(target)
                check = read_ranker if name == "ranker" else read_simulator  # a ranker may be an MTL run
                check(str(target), f"--{name}")  # checked like any file before it is kept
            except BaseException:
                target.unlink(missing_ok=True)  # nothing half-downloaded or refused stays to be trusted later
                raise
        updates[name] = str(target)
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, **updates)) if updates else cfg
