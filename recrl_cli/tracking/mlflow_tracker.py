"""The MLflow implementation of the Tracker protocol: the one module of recrl that imports mlflow.

mlflow is imported inside functions, not at module level, because importing it takes about two
seconds and the CLI imports this module for every command.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from recrl_cli.errors import TrackingError
from recrl_cli.tracking.base import (
    DATASET_CONTEXT_TAG,
    PARENT_TAG,
    DatasetRecord,
    RunInfo,
    check_can_open,
    flatten_params,
    metric_value,
    new_params,
    terminal_status,
    with_source_tags,
)
from recrl_cli.tracking.server import probe_health, redact, slug, sqlite_artifact_root, sqlite_db_path
from recrl_cli.tracking.sqlite_store import check_creatable, prepare_store, quiet_mlflow_logs, store_state

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

# MLflow's per-request limits (mlflow.utils.validation); 6000 has been the param limit since 2.x.
MAX_PARAM_LENGTH = 6000
_PARAMS_PER_BATCH = 100
_METRICS_PER_BATCH = 1000
_TAGS_PER_BATCH = 100
_TRUNCATED = "...[truncated]"

# MLflow's HTTP defaults (7 retries with exponential back-off, 120 s timeout) make a training run
# hang for minutes when the server goes away; the URL print on run end would pollute our stdout.
_ENV_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "15",
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
    # Usage telemetry is opt-in for recrl's users (set MLFLOW_DISABLE_TELEMETRY=false to send it); it
    # would otherwise run a network call beside every logging call, even on machines with no network.
    "MLFLOW_DISABLE_TELEMETRY": "true",
}
_log = logging.getLogger(__name__)
# RECRL_LOG_MODEL=0 skips the PyTorch-flavour model (≈ 1.5-5 s of torch.export per run; model.pt is always
# logged). The test suite sets it; the tests of the logged model set it back.
LOG_MODEL_ENV = "RECRL_LOG_MODEL"


def make_mlflow_tracker(tracking_uri: str) -> MlflowTracker:
    """An MlflowTracker for `tracking_uri`, checked to be reachable (TrackingError otherwise)."""
    return MlflowTracker(tracking_uri)


def _one_line(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


@contextmanager
def _mlflow_errors(action: str) -> Iterator[None]:
    """Turn MLflow's (often multi-line) exceptions into a one-line TrackingError."""
    from mlflow.exceptions import MlflowException

    try:
        yield
    except (MlflowException, OSError) as exc:  # OSError covers requests' errors and file copies
        raise TrackingError(f"MLflow could not {action}: {_one_line(exc)}") from exc


def _chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class MlflowTracker:
    """Logs to an MLflow tracking store (sqlite:/// file or http(s):// server) via MlflowClient.

    An explicit client rather than mlflow's fluent global state, so that several trackers and
    nested runs in one process do not interfere; open runs are kept on our own stack.
    """

    def __init__(self, tracking_uri: str) -> None:
        self.uri = tracking_uri
        for key, value in _ENV_DEFAULTS.items():
            os.environ.setdefault(key, value)
        if tracking_uri.split(":", 1)[0].lower() in ("http", "https"):
            probe_health(tracking_uri)
        self._artifact_root = sqlite_artifact_root(tracking_uri)
        self._stack: list[str] = []
        self._params: dict[str, dict[str, str]] = {}  # run id -> params logged so far
        self._experiment_names: dict[str, str] = {}
        self._client: MlflowClient | None = None
        # A SQLite store is created only when a run starts (see sqlite_store): a command that fails
        # before that, or only reads (a run id looked up for --simulator or --critics), leaves no store behind.
        self._db = sqlite_db_path(tracking_uri)
        state = "ready" if self._db is None else store_state(self._db)
        if state == "migrate":
            self._prepare()
        if state != "absent":
            self._open()
        elif self._db is not None:
            check_creatable(self._db)  # an unusable path still fails before any work

    def _prepare(self) -> None:
        assert self._db is not None and self._artifact_root is not None
        prepare_store(self._db, self._artifact_root)

    def _open(self) -> None:
        import mlflow

        quiet_mlflow_logs()  # no "Creating initial MLflow database tables..." on stderr
        try:
            self._client = mlflow.MlflowClient(self.uri)
            self._client.search_experiments(max_results=1)  # opens the store now
        except Exception as exc:  # any failure here means the store is unusable: say so in one line
            self._client = None
            raise TrackingError(
                f"cannot open the MLflow tracking store {redact(self.uri)}: {_one_line(exc)}"
            ) from exc

    @property
    def client(self) -> MlflowClient:
        """The client, for writing: a SQLite store that does not exist yet is created now."""
        if self._client is None:
            self._prepare()
            self._open()
        assert self._client is not None
        return self._client

    # -- runs ----------------------------------------------------------------------------------

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
        """Yield the id of a new (or resumed) run; it ends FINISHED, KILLED (Ctrl-C) or FAILED."""
        check_can_open(self._stack, nested)
        tags = {k: str(v) for k, v in (tags or {}).items()}
        if resume_run_id is not None:
            run_id = self._reopen(resume_run_id, experiment, tags)
        else:
            run_id = self._create(experiment, run_name, tags, self._stack[-1] if nested else None)
        self._stack.append(run_id)
        try:
            yield run_id
        except BaseException as exc:
            self._stack.pop()
            self._end(run_id, terminal_status(exc), raising=False)  # never mask the real error
            raise
        self._stack.pop()
        self._end(run_id, "FINISHED", raising=True)

    def _create(self, experiment: str, run_name: str, tags: dict[str, str], parent: str | None) -> str:
        experiment_id = self._experiment_id(experiment, create=True)
        tags = with_source_tags(tags)  # every run fills the UI's Source column
        if parent is not None:
            tags[PARENT_TAG] = parent
        with _mlflow_errors(f"create run '{run_name}' in {redact(self.uri)}"):
            run = self.client.create_run(experiment_id, run_name=run_name, tags=tags)
        self._params[run.info.run_id] = {}
        return run.info.run_id

    def _reopen(self, run_id: str, experiment: str, tags: dict[str, str]) -> str:
        run = self._fetch(run_id)
        actual = self._experiment_name(run.info.experiment_id)
        if actual != experiment:
            raise TrackingError(f"run {run_id} belongs to experiment '{actual}', not '{experiment}'")
        if run.info.lifecycle_stage == "deleted":
            raise TrackingError(f"run {run_id} is deleted in {redact(self.uri)}; it cannot be resumed")
        with _mlflow_errors(f"reopen run {run_id}"):
            self.client.update_run(run_id, status="RUNNING")
        self._params[run_id] = dict(run.data.params)
        self._log_tags(run_id, tags)
        return run_id

    def _end(self, run_id: str, status: str, *, raising: bool) -> None:
        self._params.pop(run_id, None)
        try:
            with _mlflow_errors(f"end run {run_id}"):
                self.client.set_terminated(run_id, status=status)
        except TrackingError:
            if raising:
                raise
            _log.warning("could not mark MLflow run %s as %s", run_id, status, exc_info=True)

    def _active(self) -> str:
        if not self._stack:
            raise ValueError("no run is open; log inside `with tracker.start_run(...)`")
        return self._stack[-1]

    def _experiment_id(self, name: str, *, create: bool) -> str | None:
        from mlflow.exceptions import MlflowException

        if self._client is None and not create:
            return None  # no store yet: no experiment
        with _mlflow_errors(f"look up experiment '{name}' in {redact(self.uri)}"):
            exp = self.client.get_experiment_by_name(name)
            if exp is None and create:
                # Anchor artifacts of a sqlite store beside the DB (see server.sqlite_artifact_root).
                root = self._artifact_root
                location = str(root / slug(name)) if root is not None else None
                try:
                    self.client.create_experiment(name, artifact_location=location)
                except MlflowException as exc:  # another process may have won the race to create it
                    if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                        raise
                exp = self.client.get_experiment_by_name(name)
        if exp is None:
            return None
        if exp.lifecycle_stage == "deleted":
            if not create:
                return None
            raise TrackingError(
                f"experiment '{name}' is deleted in {redact(self.uri)}; restore it "
                "(mlflow experiments restore) or choose another experiment name"
            )
        self._experiment_names[exp.experiment_id] = name
        return exp.experiment_id

    def _experiment_name(self, experiment_id: str) -> str:
        if experiment_id not in self._experiment_names:
            with _mlflow_errors(f"read experiment {experiment_id}"):
                self._experiment_names[experiment_id] = self.client.get_experiment(experiment_id).name
        return self._experiment_names[experiment_id]

    # -- logging -------------------------------------------------------------------------------

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log params (values stringified, over-long ones truncated with the full text as
        `params/<key>.txt`); identical re-logs are no-ops, changed values a TrackingError."""
        from mlflow.entities import Param

        run_id = self._active()
        flat = flatten_params(params)
        short = {k: v if len(v) <= MAX_PARAM_LENGTH else v[: MAX_PARAM_LENGTH - len(_TRUNCATED)] + _TRUNCATED
                 for k, v in flat.items()}  # fmt: skip
        fresh = new_params(self._params[run_id], short, run_id)
        for batch in _chunks(list(fresh.items()), _PARAMS_PER_BATCH):
            with _mlflow_errors(f"log params of run {run_id}"):
                self.client.log_batch(run_id, params=[Param(k, v) for k, v in batch])
            self._params[run_id].update(batch)
        for key in fresh:
            if short[key] != flat[key]:
                with _mlflow_errors(f"log the full value of param '{key}'"):
                    self.client.log_text(run_id, flat[key], f"params/{key}.txt")

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        from mlflow.entities import Metric

        run_id = self._active()
        now = int(time.time() * 1000)
        items = [Metric(k, metric_value(k, v), now, step or 0) for k, v in metrics.items()]
        for batch in _chunks(items, _METRICS_PER_BATCH):
            with _mlflow_errors(f"log metrics of run {run_id}"):
                self.client.log_batch(run_id, metrics=batch)

    def set_tags(self, tags: Mapping[str, str]) -> None:
        self._log_tags(self._active(), {k: str(v) for k, v in tags.items()})

    def _log_tags(self, run_id: str, tags: Mapping[str, str]) -> None:
        from mlflow.entities import RunTag

        for batch in _chunks([RunTag(k, v) for k, v in tags.items()], _TAGS_PER_BATCH):
            with _mlflow_errors(f"set tags of run {run_id}"):
                self.client.log_batch(run_id, tags=batch)

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        """Log a file as `<artifact_path>/<name>`, a directory as `<artifact_path>/<dirname>/...`."""
        run_id, path = self._active(), Path(path)
        if not path.exists():
            raise TrackingError(f"cannot log artifact {path}: no such file or directory")
        base = artifact_path.strip("/") if artifact_path else ""
        with _mlflow_errors(f"log artifact {path.name} of run {run_id}"):
            if path.is_dir():
                self.client.log_artifacts(run_id, str(path), f"{base}/{path.name}" if base else path.name)
            else:
                self.client.log_artifact(run_id, str(path), base or None)

    def log_dict(self, data: Mapping[str, Any], artifact_file: str) -> None:
        """Log `data` as indented JSON (whatever the file's extension); non-JSON values via str()."""
        run_id = self._active()
        with _mlflow_errors(f"log {artifact_file} of run {run_id}"):
            self.client.log_text(run_id, json.dumps(data, indent=2, default=str), artifact_file)

    def log_dataset(self, dataset: DatasetRecord, context: str = "training") -> None:
        """Log a prepared dataset as an input of the open run (the runs table's Dataset column)."""
        from mlflow.entities import Dataset, DatasetInput, InputTag

        run_id = self._active()
        entity = Dataset(
            name=dataset.name,
            digest=dataset.digest,
            source_type="local",
            source=json.dumps({"uri": dataset.source}),
            schema=dataset.schema,
            profile=dataset.profile,
        )
        with _mlflow_errors(f"log dataset {dataset.name} of run {run_id}"):
            self.client.log_inputs(run_id, [DatasetInput(entity, [InputTag(DATASET_CONTEXT_TAG, context)])])

    def log_model(
        self, model: Any, input_example: Any, *, name: str = "model", metadata: Mapping[str, Any] | None = None,
        step: int = 0,
    ) -> str | None:  # fmt: skip
        """Log ``model`` (a torch module, input example [N, ...]) as an MLflow logged model of the open run.

        PyTorch flavour in the ``pt2`` format (torch.export: a graph, no pickle, loadable without recrl), with the
        signature inferred from the example and its output; the run lists it as an output (the Models column) and
        it can be registered. Returns a note instead of failing the run when the module cannot be exported;
        ``RECRL_LOG_MODEL=0`` skips it.
        """
        if os.environ.get(LOG_MODEL_ENV, "1").strip().lower() in ("0", "false", "no", "off"):
            return None
        import mlflow.pytorch
        import torch
        from mlflow.entities import LoggedModelOutput
        from mlflow.models import Model, infer_signature

        run_id = self._active()
        example = input_example.detach().cpu()
        with torch.no_grad():
            signature = infer_signature(example.numpy(), model(example).detach().cpu().numpy())
        with _mlflow_errors(f"create the logged model of run {run_id}"):
            experiment_id = self.client.get_run(run_id).info.experiment_id
            logged = self.client.create_logged_model(experiment_id, name=name, source_run_id=run_id)
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(tmp) / name
            try:
                mlflow.pytorch.save_model(
                    model, str(local), mlflow_model=Model(artifact_path=name, run_id=run_id, model_id=logged.model_id),
                    signature=signature, input_example=example.numpy(), serialization_format="pt2",
                    pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"], metadata=dict(metadata or {}),
                )  # fmt: skip
            except Exception as exc:  # torch.export cannot trace every module (e.g. a language-model encoder)
                with _mlflow_errors(f"mark the logged model of run {run_id} as failed"):
                    self.client.finalize_logged_model(logged.model_id, "FAILED")
                reason = _one_line(exc, 400).split(". ")[0].removesuffix(".")[:160]  # torch's first sentence
                return (f"the model was not logged in MLflow's PyTorch flavour: torch.export cannot trace it "
                        f"({reason}); model/model.pt has it")  # fmt: skip
            with _mlflow_errors(f"log the model of run {run_id}"):
                self.client.log_model_artifacts(logged.model_id, str(local))
        with _mlflow_errors(f"log the model of run {run_id}"):
            self.client.log_outputs(run_id, [LoggedModelOutput(logged.model_id, step)])
            self.client.finalize_logged_model(logged.model_id, "READY")
        return None

    # -- reading back --------------------------------------------------------------------------

    def find_runs(self, experiment: str, tags: Mapping[str, str]) -> list[RunInfo]:
        """Active runs of `experiment` whose tags include all of `tags`, newest first."""
        experiment_id = self._experiment_id(experiment, create=False)
        if experiment_id is None:
            return []
        wanted = {k: str(v) for k, v in tags.items()}
        # Push simple equality filters down to the store; values with quotes are matched here
        # only, which sidesteps MLflow's filter-string escaping rules.
        clauses = [f"tags.`{k}` = '{v}'" for k, v in wanted.items() if not set("'\"`\\") & set(k + v)]
        with _mlflow_errors(f"search runs of experiment '{experiment}'"):
            runs = self._search_all([experiment_id], " and ".join(clauses))
        hits = [r for r in runs if all(r.data.tags.get(k) == v for k, v in wanted.items())]
        return [self._info(r) for r in hits]

    def _search_all(self, experiment_ids: list[str], filter_string: str) -> list[Run]:
        """Every run of ``experiment_ids`` matching ``filter_string``, newest first, all pages (MLflow returns at
        most 1,000 per request)."""
        runs: list[Run] = []
        token = None
        while True:
            page = self.client.search_runs(experiment_ids, filter_string, order_by=["attributes.start_time DESC"],
                                           max_results=1000, page_token=token)  # fmt: skip
            runs.extend(page)
            token = page.token
            if not token:
                return runs

    def runs_named(self, name: str) -> list[RunInfo]:
        """Active runs of any experiment whose run name is ``name``, newest first (none without a store)."""
        if self._client is None or set("'\"`\\") & set(name):  # no store yet; a quote never names a run here
            return []
        runs: list[Run] = []
        with _mlflow_errors(f"search the runs named '{name}'"):
            experiments = [e.experiment_id for e in self.client.search_experiments()]
            for ids in _chunks(experiments, 100):
                runs.extend(self._search_all(ids, f"attributes.run_name = '{name}'"))
        return [self._info(r) for r in runs if r.info.run_name == name]

    def get_run(self, run_id: str) -> RunInfo:
        return self._info(self._fetch(run_id))

    def _fetch(self, run_id: str) -> Run:
        from mlflow.exceptions import MlflowException

        if self._client is None:  # no store yet: no run (and reading creates none)
            raise TrackingError(f"no MLflow run '{run_id}' in {redact(self.uri)}")
        try:
            return self.client.get_run(run_id)
        except MlflowException as exc:
            # A malformed id is INVALID_PARAMETER_VALUE; for the user it is just as absent.
            if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                raise TrackingError(f"no MLflow run '{run_id}' in {redact(self.uri)}") from None
            raise TrackingError(f"MLflow could not read run {run_id}: {_one_line(exc)}") from exc

    def _info(self, run: Run) -> RunInfo:
        return RunInfo(
            run_id=run.info.run_id,
            name=run.info.run_name,
            status=run.info.status,
            params=dict(run.data.params),
            metrics=dict(run.data.metrics),
            tags=dict(run.data.tags),
            parent_run_id=run.data.tags.get(PARENT_TAG),
            artifact_uri=run.info.artifact_uri,
            experiment=self._experiment_name(run.info.experiment_id),
        )

    def download_artifact(self, run_id: str, artifact_path: str, dst_dir: Path) -> Path:
        """Copy a run's artifact (file or directory) to `dst_dir / <last part of artifact_path>`."""
        self._fetch(run_id)  # an unknown run gets the clear message, not a repository error
        dst_dir = Path(dst_dir)
        dst_dir.mkdir(parents=True, exist_ok=True)
        # Without the strip, "dir/" would download the directory's *contents* into dst_dir.
        with _mlflow_errors(f"download artifact '{artifact_path}' of run {run_id}"):
            return Path(self.client.download_artifacts(run_id, artifact_path.strip("/"), str(dst_dir)))
