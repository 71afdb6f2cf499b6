"""The Tracker protocol, the run record it returns, and the trackers that need no MLflow.

Everything here is pure Python: importing it must stay fast and must not pull in mlflow, which
costs seconds. `mlflow_tracker.py` holds the one real implementation.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import getpass
import json
import os
import subprocess
import uuid
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from recrl_cli.errors import TrackingError

PARENT_TAG = "mlflow.parentRunId"  # the tag MLflow's UI uses to draw parent/child trees
RUN_NAME_TAG = "mlflow.runName"
# The tags MLflow's own fluent API sets on a run, which fill the UI's Source and User columns.
SOURCE_NAME_TAG = "mlflow.source.name"
SOURCE_TYPE_TAG = "mlflow.source.type"
GIT_COMMIT_TAG = "mlflow.source.git.commit"
USER_TAG = "mlflow.user"
DATASET_CONTEXT_TAG = "mlflow.data.context"  # what a run did with a dataset input: "training", "evaluation"
# MLflow's dataset digest column holds 36 characters; the manifest fingerprint (a sha256) is cut to 32 hex digits.
DIGEST_LENGTH = 32


def git_info(code_dir: Path | None = None) -> dict[str, str]:
    """Commit SHA and dirty flag of the recrl code that runs ("unknown" outside a git checkout).

    Asked of the package's own directory (or `code_dir`), not the current one: a run started from
    anywhere else (a scratch directory, a test) must still record which code produced it.
    `--no-optional-locks`: a plain `git status` refreshes the index and takes `.git/index.lock` to
    write it back, which makes a commit or checkout the user runs at that moment fail.
    """
    code_dir = code_dir or Path(__file__).resolve().parent
    git = ["git", "--no-optional-locks"]
    try:
        sha = subprocess.run(
            [*git, "rev-parse", "HEAD"], cwd=code_dir, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            [*git, "status", "--porcelain", "--untracked-files=no"],
            cwd=code_dir,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
        return {"recrl.git_sha": sha, "recrl.git_dirty": str(bool(dirty)).lower()}
    except (OSError, subprocess.SubprocessError):
        return {"recrl.git_sha": "unknown", "recrl.git_dirty": "unknown"}


def source_tags(command: str = "recrl", git: Mapping[str, str] | None = None) -> dict[str, str]:
    """MLflow's source tags for a run started by ``command`` (``recrl train mmoe``): name, type ``LOCAL``, the
    user, and the git commit of the recrl code when it is known (``git``: a :func:`git_info` already read)."""
    tags = {SOURCE_NAME_TAG: command, SOURCE_TYPE_TAG: "LOCAL"}
    with contextlib.suppress(OSError, KeyError, ImportError):  # no login name, no passwd entry for the uid
        tags[USER_TAG] = getpass.getuser()
    sha = (git if git is not None else git_info()).get("recrl.git_sha", "unknown")
    if sha and sha != "unknown":
        tags[GIT_COMMIT_TAG] = sha
    return tags


def with_source_tags(tags: Mapping[str, str]) -> dict[str, str]:
    """``tags`` plus the source tags it does not set itself (every run gets them; the caller's win)."""
    if SOURCE_TYPE_TAG in tags and SOURCE_NAME_TAG in tags:
        return dict(tags)
    return {**source_tags(), **tags}


@dataclass(frozen=True)
class DatasetRecord:
    """A prepared dataset as an MLflow run input (the runs table's Dataset column).

    ``digest`` is the manifest's fingerprint (cut to :data:`DIGEST_LENGTH`), ``source`` the prepared directory;
    ``schema`` and ``profile`` are JSON text: the feature columns in MLflow's column-spec form and the row counts.
    """

    name: str
    digest: str
    source: str
    schema: str
    profile: str


def dataset_record(manifest: Mapping[str, Any], prepared_dir: Path) -> DatasetRecord:
    """The :class:`DatasetRecord` of a prepared dataset from its ``manifest.json``.

    The name is the dataset with its version where it has one (``retailrocket``, ``kuairand-pure``).
    """
    version = manifest.get("version")
    name = f"{manifest.get('dataset', 'dataset')}" + (f"-{version}" if version else "")
    features = [f.get("name", str(i)) if isinstance(f, Mapping) else str(f)
                for i, f in enumerate(manifest.get("features", []))]  # fmt: skip
    schema = {"mlflow_colspec": [{"name": n, "type": "long", "required": True} for n in features]}
    splits = manifest.get("splits", {})
    profile = {
        "tasks": list(manifest.get("tasks", [])),
        **{f"{split}_rows": info.get("rows") for split, info in splits.items() if isinstance(info, Mapping)},
    }
    return DatasetRecord(
        name=name,
        digest=str(manifest.get("fingerprint", ""))[:DIGEST_LENGTH],
        source=Path(prepared_dir).resolve().as_posix(),
        schema=json.dumps(schema),
        profile=json.dumps(profile),
    )


@dataclass(frozen=True)
class RunInfo:
    """One run as read back from a tracker; `metrics` holds each key's latest value."""

    run_id: str
    name: str
    status: str  # "RUNNING" | "FINISHED" | "FAILED" | "KILLED"
    params: dict[str, str]
    metrics: dict[str, float]
    tags: dict[str, str]
    parent_run_id: str | None
    artifact_uri: str
    experiment: str


class Tracker(Protocol):
    """What the training loop and the CLI log through; see `MlflowTracker` for the semantics."""

    uri: str

    def start_run(
        self,
        *,
        experiment: str,
        run_name: str,
        tags: Mapping[str, str] | None = None,
        resume_run_id: str | None = None,
        nested: bool = False,
    ) -> AbstractContextManager[str]: ...
    def log_params(self, params: Mapping[str, Any]) -> None: ...
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None: ...
    def set_tags(self, tags: Mapping[str, str]) -> None: ...
    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None: ...
    def log_dict(self, data: Mapping[str, Any], artifact_file: str) -> None: ...
    def log_dataset(self, dataset: DatasetRecord, context: str = "training") -> None: ...
    def log_model(
        self, model: Any, input_example: Any, *, name: str = "model", metadata: Mapping[str, Any] | None = None,
        step: int = 0,
    ) -> str | None: ...  # fmt: skip
    def find_runs(self, experiment: str, tags: Mapping[str, str]) -> list[RunInfo]: ...
    def runs_named(self, name: str) -> list[RunInfo]: ...
    def get_run(self, run_id: str) -> RunInfo: ...
    def download_artifact(self, run_id: str, artifact_path: str, dst_dir: Path) -> Path: ...


def is_run_id(ref: str) -> bool:
    """An MLflow run id (hex, at least 16 digits, no path separators or suffix) rather than a path or a name."""
    return bool(ref) and all(c in "0123456789abcdef" for c in ref.lower()) and len(ref) >= 16


def run_id_of_name(tracker: Tracker, name: str, option: str) -> str:
    """The id of the one finished run named ``name`` in any experiment of the tracker's store; a one-line
    ConfigError naming ``option`` (when given) when no finished run has that name, or when several do (their ids listed)."""
    from recrl_cli.errors import ConfigError
    from recrl_cli.tracking.server import redact

    runs = [r for r in tracker.runs_named(name) if r.status == "FINISHED"]
    prefix = f"{option}: " if option else ""
    if not runs:
        raise ConfigError(
            f"{prefix}no file {name!r} and no finished MLflow run named {name!r} in {redact(tracker.uri)}; "
            f"pass a run directory, its model.pt, an MLflow run id or name, or latest"
        )
    if len(runs) > 1:
        listed = ", ".join(f"{r.run_id} ({r.experiment})" for r in runs[:10])
        more = f" and {len(runs) - 10} more" if len(runs) > 10 else ""
        raise ConfigError(
            f"{prefix}{len(runs)} finished MLflow runs are named {name!r}: {listed}{more}; pass one run id"
        )
    return runs[0].run_id


def resolve_tracking_uri(cli_value: str | None) -> str:
    """--tracking-uri wins, then $MLFLOW_TRACKING_URI, else `sqlite:///<cwd>/mlflow.db`.

    The default is absolute so that `recrl ui` started from the same directory sees the same store.
    """
    if cli_value:
        return cli_value
    if env := os.environ.get("MLFLOW_TRACKING_URI"):
        return env
    return f"sqlite:///{Path.cwd() / 'mlflow.db'}"


def _format_value(value: Any) -> str:
    if value is None:
        return "None"
    if isinstance(value, bool):  # before int: bool is an int subclass
        return "true" if value else "false"
    if isinstance(value, tuple | list):
        return ",".join(_format_value(v) for v in value)
    if isinstance(value, set | frozenset):
        return ",".join(sorted(_format_value(v) for v in value))
    if isinstance(value, Path):
        return value.as_posix()
    return str(value)


def _is_record(obj: Any) -> bool:
    return isinstance(obj, Mapping) or (dataclasses.is_dataclass(obj) and not isinstance(obj, type))


def flatten_params(obj: Any, prefix: str = "") -> dict[str, str]:
    """Flatten nested mappings/dataclass instances to dotted keys with string values.

    {"train": {"lr": 0.001}} -> {"train.lr": "0.001"}; tuples -> "512,256"; None -> "None";
    bools -> "true"/"false". An empty nested record keeps its key with the value "{}".
    """
    if not _is_record(obj):
        raise TypeError(f"flatten_params needs a mapping or a dataclass instance, not {type(obj).__name__}")
    items = (
        obj.items()
        if isinstance(obj, Mapping)
        else ((f.name, getattr(obj, f.name)) for f in dataclasses.fields(obj))
    )
    out: dict[str, str] = {}
    for key, value in items:
        full = f"{prefix}.{key}" if prefix else str(key)
        if _is_record(value):
            flat = flatten_params(value, full) or {full: "{}"}
        else:
            flat = {full: _format_value(value)}
        for k, v in flat.items():
            if k in out:
                raise TrackingError(f"parameter key '{k}' occurs twice after flattening")
            out[k] = v
    return out


def new_params(logged: Mapping[str, str], params: Mapping[str, str], run_id: str) -> dict[str, str]:
    """The params not yet logged; identical re-logs (a resumed run) are dropped, changes refused."""
    fresh: dict[str, str] = {}
    for key, value in params.items():
        old = logged.get(key)
        if old is None:
            fresh[key] = value
        elif old != value:
            raise TrackingError(
                f"param '{key}' of run {run_id} is already '{_clip(old)}'; MLflow params cannot change "
                f"(new value '{_clip(value)}')"
            )
    return fresh


def metric_value(key: str, value: Any) -> float:
    """A metric as a float (0-d tensors and numpy scalars included); anything else is refused."""
    try:
        return float(value)
    except (TypeError, ValueError):
        raise TrackingError(f"metric '{key}' is not a number: {_clip(repr(value))}") from None


def _clip(text: str, limit: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def terminal_status(exc: BaseException | None) -> str:
    """The status a run ends with when its `with` block exits with `exc` (None: normal exit)."""
    if exc is None or (isinstance(exc, SystemExit) and exc.code in (0, None)):
        return "FINISHED"
    return "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED"


def check_can_open(stack: list[str], nested: bool) -> None:
    """Runs nest only on request, and only under an open parent (programming errors, not user errors)."""
    if stack and not nested:
        raise ValueError(f"run {stack[-1]} is still open; pass nested=True to open a child run")
    if nested and not stack:
        raise ValueError("nested=True needs an open parent run")


class NullTracker:
    """Logs nothing (for `--no-track` and unit tests that do not care about tracking)."""

    uri = "null:"

    @contextmanager
    def start_run(self, *, experiment: str, run_name: str, tags=None, resume_run_id=None, nested=False):
        yield resume_run_id or uuid.uuid4().hex  # a resumed run keeps its id

    def _ignore(self, *args: Any, **kwargs: Any) -> None:
        pass

    log_params = log_metrics = set_tags = log_artifact = log_dict = log_dataset = log_model = _ignore

    def find_runs(self, experiment: str, tags: Mapping[str, str]) -> list[RunInfo]:
        return []

    def runs_named(self, name: str) -> list[RunInfo]:
        return []

    def get_run(self, run_id: str) -> RunInfo:
        raise TrackingError(f"no MLflow run '{run_id}' in {self.uri} (tracking is off)")

    def download_artifact(self, run_id: str, artifact_path: str, dst_dir: Path) -> Path:
        raise TrackingError(f"no MLflow run '{run_id}' in {self.uri} (tracking is off)")


@dataclass
class RecordedModel:
    """A model handed to :meth:`RecordingTracker.log_model`: a CPU copy of the module and its input example."""

    name: str
    model: Any
    input_example: Any
    metadata: dict[str, Any]
    step: int


@dataclass
class RecordedRun:
    """Everything logged to one run of a RecordingTracker; metrics keep (step, value) history."""

    run_id: str
    name: str
    experiment: str
    parent_run_id: str | None
    status: str = "RUNNING"
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    artifacts: dict[str, bytes] = field(default_factory=dict)  # artifact path -> file content
    datasets: list[tuple[DatasetRecord, str]] = field(default_factory=list)  # (dataset, context)
    models: list[RecordedModel] = field(default_factory=list)

    def info(self) -> RunInfo:
        latest = {key: _latest(history) for key, history in self.metrics.items()}
        return RunInfo(
            run_id=self.run_id,
            name=self.name,
            status=self.status,
            params=dict(self.params),
            metrics=latest,
            tags=dict(self.tags),
            parent_run_id=self.parent_run_id,
            artifact_uri=f"memory://{self.run_id}",
            experiment=self.experiment,
        )


def _latest(history: list[tuple[int, float]]) -> float:
    """MLflow's "latest" value: the one at the highest step; ties go to the last logged."""
    best_step, best = history[0]
    for step, value in history:
        if step >= best_step:
            best_step, best = step, value
    return best


class RecordingTracker:
    """Keeps every run in memory, with the same run rules as MlflowTracker (tests use it).

    Param values are kept whole (no truncation); artifact contents are copied at log time.
    """

    uri = "memory:"

    def __init__(self) -> None:
        self.runs: dict[str, RecordedRun] = {}  # insertion order = creation order
        self._stack: list[str] = []

    @contextmanager
    def start_run(
        self,
        *,
        experiment: str,
        run_name: str,
        tags: Mapping[str, str] | None = None,
        resume_run_id: str | None = None,
        nested: bool = False,
    ) -> Iterator[str]:
        check_can_open(self._stack, nested)
        if resume_run_id is not None:
            run = self._run(resume_run_id)
            if run.experiment != experiment:
                raise TrackingError(
                    f"run {resume_run_id} belongs to experiment '{run.experiment}', not '{experiment}'"
                )
            run.status = "RUNNING"
        else:
            parent = self._stack[-1] if nested else None
            run = RecordedRun(uuid.uuid4().hex, run_name, experiment, parent)
            run.tags.update(with_source_tags(tags or {}))
            run.tags[RUN_NAME_TAG] = run_name
            if parent:
                run.tags[PARENT_TAG] = parent
            self.runs[run.run_id] = run
        run.tags.update({k: str(v) for k, v in (tags or {}).items()})
        self._stack.append(run.run_id)
        try:
            yield run.run_id
        except BaseException as exc:
            run.status = terminal_status(exc)
            raise
        else:
            run.status = "FINISHED"
        finally:
            self._stack.pop()

    def _run(self, run_id: str) -> RecordedRun:
        if run_id not in self.runs:
            raise TrackingError(f"no MLflow run '{run_id}' in {self.uri}")
        return self.runs[run_id]

    def _active(self) -> RecordedRun:
        if not self._stack:
            raise ValueError("no run is open; log inside `with tracker.start_run(...)`")
        return self.runs[self._stack[-1]]

    def log_params(self, params: Mapping[str, Any]) -> None:
        run = self._active()
        run.params.update(new_params(run.params, flatten_params(params), run.run_id))

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        run = self._active()
        for key, value in metrics.items():
            run.metrics.setdefault(key, []).append((step or 0, metric_value(key, value)))

    def metric_history(self, run_id: str, key: str) -> list[tuple[int, float]]:
        """(step, value) pairs in logging order."""
        return list(self._run(run_id).metrics.get(key, []))

    def set_tags(self, tags: Mapping[str, str]) -> None:
        self._active().tags.update({k: str(v) for k, v in tags.items()})

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        run, path = self._active(), Path(path)
        if not path.exists():
            raise TrackingError(f"cannot log artifact {path}: no such file or directory")
        base = f"{artifact_path.strip('/')}/" if artifact_path else ""
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for f in files:
            rel = f.relative_to(path.parent).as_posix()
            run.artifacts[base + rel] = f.read_bytes()

    def log_dict(self, data: Mapping[str, Any], artifact_file: str) -> None:
        text = json.dumps(data, indent=2, default=str)
        self._active().artifacts[artifact_file.strip("/")] = text.encode()

    def log_dataset(self, dataset: DatasetRecord, context: str = "training") -> None:
        self._active().datasets.append((dataset, context))

    def log_model(
        self, model: Any, input_example: Any, *, name: str = "model", metadata: Mapping[str, Any] | None = None,
        step: int = 0,
    ) -> str | None:  # fmt: skip
        """Keep a copy of the module (on the CPU) and its example, to be logged for real by a replay."""
        copied = copy.deepcopy(model).cpu()
        example = input_example.detach().cpu().clone()
        self._active().models.append(RecordedModel(name, copied, example, dict(metadata or {}), step))
        return None

    def find_runs(self, experiment: str, tags: Mapping[str, str]) -> list[RunInfo]:
        hits = [
            r
            for r in self.runs.values()
            if r.experiment == experiment and all(r.tags.get(k) == str(v) for k, v in tags.items())
        ]
        return [r.info() for r in reversed(hits)]

    def runs_named(self, name: str) -> list[RunInfo]:
        """Runs of any experiment whose MLflow run name is ``name``, newest first."""
        return [r.info() for r in reversed(self.runs.values()) if r.name == name]

    def get_run(self, run_id: str) -> RunInfo:
        return self._run(run_id).info()

    def download_artifact(self, run_id: str, artifact_path: str, dst_dir: Path) -> Path:
        """Like MLflow: the file or directory lands at `dst_dir / <last part of artifact_path>`."""
        run, want = self._run(run_id), artifact_path.strip("/")
        found = {k: v for k, v in run.artifacts.items() if k == want or k.startswith(want + "/")}
        if not found:
            raise TrackingError(f"run {run_id} has no artifact '{artifact_path}'")
        target = Path(dst_dir) / want.rsplit("/", 1)[-1]
        for key, content in found.items():
            out = Path(str(target) + key[len(want) :])
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(content)
        return target
