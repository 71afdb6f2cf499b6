"""The SQLite tracking store (recrl's default, `sqlite:///mlflow.db`): created whole or not at all.

MLflow creates a new SQLite store in place, running about 70 Alembic migrations on the file (4 s on
an idle core, 15-20 s on a busy 2-core machine). Interrupted (Ctrl-C, SIGTERM, a crash), that leaves
a half-migrated file which every later run refuses (`index index_params_run_uuid already exists`);
two processes migrating the same new file collide (`table _alembic_tmp_experiments already exists`).

Here a store is only created, repaired or migrated

* under an exclusive lock on the directory that holds it (`flock` on the directory itself, so no
  lock file is left behind; where `flock` is missing the step runs unlocked, as MLflow would),
* in a private temporary file beside it (`.<name>.recrl-new-<pid>`), renamed over the target
  (`os.replace`, atomic) only once the migration has finished.

Other processes see no store or a whole one, never half of one, and a process that is killed
mid-creation leaves only its temporary file, which the next creator removes (under the lock, every
such file is stale).

A store that is half-migrated anyway (left by an older recrl or by MLflow itself) is recognised
before MLflow touches it: a leftover `_alembic_tmp_*` table, tables without a schema version, or a
migration that fails. When it holds nothing (no runs, experiments, models or traces) it is replaced
by a new store; otherwise it is reported in one line that says how to repair it. A store of an older
MLflow whose tables are complete is left to `mlflow db upgrade`, as MLflow asks; one whose tables
are missing (MLflow would migrate it in place) is migrated on a copy, then renamed into place.

Nothing here runs until a run actually starts (see MlflowTracker): reading from a store that does
not exist finds nothing and creates nothing.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from recrl_cli.errors import TrackingError

_log = logging.getLogger(__name__)

LOCK_TIMEOUT_S = 600.0  # a creation takes seconds; this long means the holder is stuck
_LEFTOVER_PREFIX = "_alembic_tmp_"
# Tables whose rows are the user's records; the Default experiment (id 0) does not count.
_RECORD_TABLES = {
    "runs": "SELECT COUNT(*) FROM runs",
    "experiments": "SELECT COUNT(*) FROM experiments WHERE experiment_id != 0",
    "registered_models": "SELECT COUNT(*) FROM registered_models",
    "trace_info": "SELECT COUNT(*) FROM trace_info",
    "logged_models": "SELECT COUNT(*) FROM logged_models",
}


@dataclass(frozen=True)
class StoreFile:
    """What a SQLite store file holds, read without MLflow and without writing anything."""

    path: Path
    tables: frozenset[str] = field(default_factory=frozenset)  # empty: no file, an empty file or no tables
    version: str | None = None  # alembic_version.version_num
    runs: int = 0
    records: int = 0  # runs + experiments (not Default) + registered models + traces + logged models

    @property
    def new(self) -> bool:
        """Nothing there yet: the file is missing, empty, or a SQLite file without tables."""
        return not self.tables

    @property
    def leftovers(self) -> list[str]:
        return sorted(t for t in self.tables if t.startswith(_LEFTOVER_PREFIX))


def read_store_file(db: Path) -> StoreFile:
    """Inspect `db` read-only; TrackingError (one line) when it cannot be opened or is not SQLite."""
    try:
        if not db.exists() or (db.is_file() and db.stat().st_size == 0):
            return StoreFile(db)
        uri = f"file:{urllib.parse.quote(str(db))}?mode=ro"
        with contextlib.closing(sqlite3.connect(uri, uri=True)) as conn:
            tables = frozenset(
                r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
            )
            version = None
            if "alembic_version" in tables:
                row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
                version = row[0] if row else None
            counts = {t: conn.execute(q).fetchone()[0] for t, q in _RECORD_TABLES.items() if t in tables}
    except (OSError, sqlite3.Error) as exc:
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        reason = (getattr(exc, "strerror", None) or str(exc)) + where
        if db.is_dir():
            reason = "it is a directory"
        raise TrackingError(f"cannot open the MLflow database {db}: {reason}") from None
    return StoreFile(db, tables, version, counts.get("runs", 0), sum(counts.values()))


def latest_revision() -> str:
    """The schema version this MLflow writes (its newest Alembic revision)."""
    from mlflow.store.db.utils import _get_latest_schema_revision

    return _get_latest_schema_revision()


def store_problem(store: StoreFile, head: str) -> str | None:
    """Why an existing store cannot be used as it is (None: it is whole and current)."""
    if store.new:
        return None
    if store.leftovers:
        return f"leftover table {store.leftovers[0]} of an interrupted migration"
    if store.version is None:
        return "its tables have no schema version: its creation was interrupted"
    if store.version != head:
        return f"schema version {store.version}, this MLflow writes {head}"
    return None


def store_state(db: Path) -> str:
    """What a tracker can do with `db` now, without writing anything:

    * ``"ready"``: a whole, current store: open it;
    * ``"absent"``: nothing to read (no store, or a broken one that holds no records, which the
      first run replaces);
    * ``"migrate"``: an older store with records that MLflow would upgrade on open: prepare_store
      migrates it on a copy first.

    A broken store that holds records is a one-line TrackingError saying how to repair it.
    """
    store = read_store_file(db)
    if store.new:
        return "absent"
    problem = store_problem(store, latest_revision())
    if problem is None:
        return "ready"
    if store.records == 0:
        return "absent"
    if _can_migrate(store):
        return "migrate"
    raise TrackingError(_repair_hint(store, problem))


def check_creatable(db: Path) -> None:
    """TrackingError (one line) unless a store could be created at `db` later, checked without
    creating anything: the nearest existing ancestor is a writable directory."""
    parent = db.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise TrackingError(f"cannot create the MLflow database {db}: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise TrackingError(f"cannot create the MLflow database {db}: {parent} is not writable")


def prepare_store(db: Path, artifact_root: Path) -> None:
    """Make `db` a whole, current store before a run is written to it: create it, replace a broken
    one that holds nothing, or migrate an older one on a copy; all under the directory lock."""
    store = read_store_file(db)
    head = latest_revision()
    if not store.new and store_problem(store, head) is None:
        return  # the common case: nothing to do, no lock taken
    db.parent.mkdir(parents=True, exist_ok=True)
    with directory_lock(db.parent):
        _remove_stale_temporaries(db)
        store = read_store_file(db)  # another process may have created or repaired it meanwhile
        problem = store_problem(store, head)
        if store.new:
            _build(db, artifact_root, source=None)
        elif problem is None:
            return
        elif store.records == 0:
            _log.warning("note: replacing the unusable MLflow store %s (%s); it held no runs", db, problem)
            _build(db, artifact_root, source=None)
        elif _can_migrate(store):
            try:
                _build(db, artifact_root, source=db)
            except TrackingError as exc:
                raise TrackingError(_repair_hint(store, str(exc))) from None
        else:
            raise TrackingError(_repair_hint(store, problem))


def _can_migrate(store: StoreFile) -> bool:
    """An older store MLflow would upgrade on open: a version, no leftovers, tables missing."""
    import mlflow.store.db.utils  # noqa: F401  (fills Base.metadata with every table)
    from mlflow.store.db.base_sql_model import Base

    return store.version is not None and not store.leftovers and not set(Base.metadata.tables) <= store.tables


def _repair_hint(store: StoreFile, problem: str) -> str:
    uri = f"sqlite:///{store.path}"
    held = f"{store.runs} run(s)" if store.runs else f"{store.records} record(s)"
    if store.version and not store.leftovers and problem.startswith("schema version"):
        how = f"back it up, then run `mlflow db upgrade {uri}`"
    else:
        how = f"restore it from a backup, or move it aside (recrl then creates a new store at {store.path})"
    return f"the MLflow store {store.path} is unusable ({problem}) and holds {held}: {how}"


def _temporary_name(db: Path) -> Path:
    return db.with_name(f".{db.name}.recrl-new-{os.getpid()}")


def _remove_stale_temporaries(db: Path) -> None:
    """Temporaries of creators that were killed (SIGKILL, power loss); call only under the lock."""
    for path in db.parent.glob(f".{db.name}.recrl-new-*"):
        with contextlib.suppress(OSError):
            path.unlink()


def _build(db: Path, artifact_root: Path, source: Path | None) -> None:
    """A new store (source None) or a migrated copy of `source`, in a temporary file renamed over `db`."""
    tmp = _temporary_name(db)
    for path in (tmp, Path(f"{tmp}-journal")):
        path.unlink(missing_ok=True)
    started = time.monotonic()
    try:
        if source is not None:
            with (
                contextlib.closing(sqlite3.connect(source)) as src,
                contextlib.closing(sqlite3.connect(tmp)) as dst,
            ):
                src.backup(dst)  # a consistent snapshot, even while another process reads it
        _migrate(tmp, artifact_root)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, db)
        _fsync_directory(db.parent)
    except BaseException:  # Ctrl-C, SIGTERM (raised as KeyboardInterrupt by the CLI), errors
        for path in (tmp, Path(f"{tmp}-journal")):
            with contextlib.suppress(OSError):
                path.unlink()
        raise
    _log.debug(
        "MLflow store %s %s in %.1f s", db, "migrated" if source else "created", time.monotonic() - started
    )


def _migrate(db: Path, artifact_root: Path) -> None:
    """Run MLflow's migrations on `db` (a private file), then close every connection to it."""
    from mlflow.exceptions import MlflowException
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
    from sqlalchemy.exc import SQLAlchemyError

    quiet_mlflow_logs()
    uri = f"sqlite:///{db}"
    store = None
    try:
        store = SqlAlchemyStore(uri, str(artifact_root))  # creates the tables and the Default experiment
    except (MlflowException, SQLAlchemyError, OSError) as exc:
        raise TrackingError(f"migrating it failed: {' '.join(str(exc).split())[:300]}") from None
    finally:
        # MLflow caches one engine per URI for the process: drop this private file's engine, so no
        # pooled connection keeps the (renamed or deleted) file open.
        engine = SqlAlchemyStore._engine_map.pop(uri, None)
        if engine is not None:
            engine.dispose()
        if store is not None:
            store.engine.dispose()


def quiet_mlflow_logs() -> None:
    """`import mlflow` sets its logger to INFO: creating a store would print Alembic's progress."""
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _fsync_directory(directory: Path) -> None:
    with contextlib.suppress(OSError):  # not possible everywhere (Windows); the rename is still atomic
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def directory_lock(directory: Path, timeout_s: float = LOCK_TIMEOUT_S) -> Iterator[None]:
    """An exclusive inter-process lock on `directory` (flock on the directory's own descriptor).

    The lock ends with the process, however it ends, so a killed creator never blocks the next.
    Where flock is not available (not POSIX, some network file systems) the body runs unlocked.
    """
    try:
        import fcntl
    except ImportError:  # Windows: no flock; MLflow's own behaviour
        yield
        return
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        yield
        return
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TrackingError(
                        f"another process has been creating the MLflow store in {directory} for over "
                        f"{timeout_s:g} s; stop it and try again"
                    ) from None
                time.sleep(0.05)
            except OSError:  # ENOLCK, EOPNOTSUPP: locks not supported here
                break
        yield
    finally:
        os.close(fd)  # releases the lock
