"""Run a local `mlflow server` as a subprocess (for `recrl ui` and for tests): command, health, stop.

Where artifacts go. With a sqlite store MLflow 3.17 puts artifacts of experiments created by a
*client* under `./mlruns/<experiment id>/` of that client's working directory, and a *server*
started with no options proxies them into `./mlartifacts` of the server's directory. The
experiment's artifact location is stored, absolute, in the database, so the UI can read any run's
artifacts as long as they are local files. recrl anchors the artifacts of a sqlite store beside
the database, in `<db dir>/mlruns/` (library runs: `mlruns/<experiment slug>/<run id>/artifacts`,
see `sqlite_artifact_root`), and `ui_command` passes the same directory as
`--default-artifact-root`, so experiments created from the UI land there too and stay writable
by the library. That is also what MLflow does by default when everything runs in one directory.

The server is started with one worker and without MLflow's job runner (a set of huey consumer
processes for GenAI jobs that recrl does not use): on a small machine that halves the start time.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from recrl_cli.errors import TrackingError

_SERVER_ENV = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


def sqlite_db_path(uri: str) -> Path | None:
    """The absolute database file of a `sqlite:///` URI; None for other schemes and in-memory DBs."""
    if not uri.startswith("sqlite:///"):
        return None
    # sqlite:////abs/x.db -> "/abs/x.db"; sqlite:///rel.db -> "rel.db" (relative to the cwd)
    raw = urllib.parse.unquote(uri[len("sqlite:///") :].split("?", 1)[0])
    if raw in ("", ":memory:"):
        return None
    return Path(raw).absolute()


def sqlite_artifact_root(uri: str) -> Path | None:
    """Where artifacts of runs in a sqlite store live: `mlruns/` beside the database file.

    MLflow's own default is `./mlruns` under whatever directory the *process* runs in, so the
    same DB used from two directories would scatter artifacts. Anchoring them to the DB keeps a
    store self-contained; `ui_command` passes the same root so experiments created in the
    UI land there too. (With recrl's default URI the two agree anyway: the DB is in the cwd.)
    """
    db = sqlite_db_path(uri)
    return None if db is None else db.parent / "mlruns"


def slug(name: str) -> str:
    """A directory-safe form of an experiment name: 'recrl/retailrocket' -> 'recrl-retailrocket'."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "experiment"


def redact(uri: str) -> str:
    """The URI with any password replaced, for error messages."""
    parts = urllib.parse.urlsplit(uri)
    if parts.password is None:
        return uri
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def probe_health(uri: str, timeout_s: float = 3.0) -> None:
    """Raise a one-line TrackingError unless `<uri>/health` answers with HTTP 200."""
    parts = urllib.parse.urlsplit(uri)
    netloc = parts.netloc.rsplit("@", 1)[-1]  # /health needs no credentials; urllib rejects them
    url = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path.rstrip("/") + "/health", "", ""))
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            response.read(64)
        return
    except urllib.error.HTTPError as exc:
        reason = f"HTTP {exc.code} {exc.reason} from {url}"
    except urllib.error.URLError as exc:
        reason = str(exc.reason)
    except (OSError, ValueError) as exc:  # timeouts, bad ports, malformed URLs
        reason = str(exc) or type(exc).__name__
    raise TrackingError(f"cannot reach the MLflow tracking server at {redact(uri)}: {reason}")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def ui_command(
    tracking_uri: str,
    host: str = "127.0.0.1",
    port: int = 5000,
    artifact_root: Path | None = None,
    workers: int = 1,
) -> list[str]:
    """The argv of `python -m mlflow server` for `tracking_uri` (run it with env=server_env()).

    `artifact_root` defaults to `<db dir>/mlruns` for sqlite stores (see the module docstring);
    for other stores MLflow's own default applies unless it is given.
    """
    argv = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", tracking_uri]
    argv += ["--host", host, "--port", str(port), "--workers", str(workers)]
    root = artifact_root if artifact_root is not None else sqlite_artifact_root(tracking_uri)
    if root is not None:
        argv += ["--default-artifact-root", str(Path(root).absolute())]
    return argv


def server_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for the server process: `base` (default os.environ) without job runner."""
    env = dict(os.environ if base is None else base)
    env.update(_SERVER_ENV)
    return env


class ServerProcess(subprocess.Popen):
    """A background process whose stdout and stderr go to `log_path`, started as the leader of
    a new process group on POSIX (so stop_server can also end the uvicorn workers it spawns).
    A log file rather than a pipe: nobody reads the pipe of a long-lived server, and a full pipe
    blocks it."""

    def __init__(
        self, argv: list[str], log_path: Path, *, owns_log: bool = False, env: dict[str, str] | None = None
    ) -> None:
        with open(log_path, "ab") as log:  # the child keeps its own copy of the descriptor
            super().__init__(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=os.name == "posix",
                creationflags=getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0),
            )
        self.log_path, self.owns_log, self.own_group = Path(log_path), owns_log, os.name == "posix"

    def last_log_line(self) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return next((line.strip() for line in reversed(lines) if line.strip()), "")


def start_server(
    tracking_uri: str,
    host: str = "127.0.0.1",
    port: int = 5000,
    artifact_root: Path | None = None,
    log_path: Path | None = None,
) -> ServerProcess:
    """Start `mlflow server` in the background (not waiting for it: see wait_until_healthy).

    Its output goes to `log_path`, by default a temporary file that stop_server removes.
    """
    owns_log = log_path is None
    if log_path is None:
        fd, name = tempfile.mkstemp(prefix="recrl-mlflow-server-", suffix=".log")
        os.close(fd)
        log_path = Path(name)
    argv = ui_command(tracking_uri, host, port, artifact_root)
    return ServerProcess(argv, log_path, owns_log=owns_log, env=server_env())


def check_port_free(host: str, port: int) -> None:
    """TrackingError (one line) unless a server could listen on host:port now."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
        try:
            sock.bind((host, port))
        except OSError as exc:
            reason = "it is in use" if exc.errno == errno.EADDRINUSE else (exc.strerror or str(exc))
            raise TrackingError(f"cannot serve the MLflow UI on {host}:{port}: {reason}") from None


def run_server_in_foreground(argv: list[str]) -> None:
    """Run `mlflow server` (argv from ui_command) until it exits or this process is interrupted.

    The server runs in its own process group, with this terminal's output: MLflow's CLI starts
    uvicorn (and its workers) as further processes and does not pass a SIGTERM on to them, so
    only signalling the whole group stops them all. A Ctrl-C, or a SIGTERM (raised as
    KeyboardInterrupt by the recrl command), stops the group, then propagates.
    TrackingError when the server exits on its own with a non-zero status.
    """
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        env=server_env(),
        start_new_session=os.name == "posix",
        creationflags=getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0),
    )
    proc.own_group = os.name == "posix"  # type: ignore[attr-defined]  (read by stop_server)
    try:
        code = proc.wait()
    except BaseException:
        try:
            stop_server(proc)
        except BaseException:  # a second Ctrl-C during the grace period: no more grace
            if proc.own_group:  # type: ignore[attr-defined]
                _signal_group(proc.pid, signal.SIGKILL)
            else:
                proc.kill()
            proc.wait()
        raise
    if code != 0:
        raise TrackingError(f"mlflow server exited with code {code}; see its messages above")


def wait_until_healthy(url: str, timeout_s: float = 60.0, proc: subprocess.Popen | None = None) -> None:
    """Poll `<url>/health` until it answers; TrackingError on timeout or if `proc` exits first."""
    deadline = time.monotonic() + timeout_s
    while True:
        if proc is not None and proc.poll() is not None:
            raise TrackingError(f"mlflow server exited with code {proc.returncode}{_tail(proc)}")
        try:
            probe_health(url, timeout_s=1.0)
            return
        except TrackingError:
            if time.monotonic() >= deadline:
                raise TrackingError(
                    f"mlflow server at {redact(url)} did not answer within {timeout_s:g} s{_tail(proc)}"
                ) from None
        time.sleep(0.2)


def _tail(proc: subprocess.Popen | None) -> str:
    line = proc.last_log_line() if isinstance(proc, ServerProcess) else ""
    return f": {line}" if line else ""


def stop_server(proc: subprocess.Popen, timeout_s: float = 10.0) -> None:
    """Terminate the server and everything it spawned (SIGTERM, then SIGKILL after `timeout_s`)."""
    if getattr(proc, "own_group", False):
        # Signal the whole group: the mlflow CLI process does not pass SIGTERM on to uvicorn.
        _signal_group(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while _group_alive(proc) and time.monotonic() < deadline:
            time.sleep(0.1)
        _signal_group(proc.pid, signal.SIGKILL)
    else:
        proc.terminate()
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
    proc.wait()
    if isinstance(proc, ServerProcess) and proc.owns_log:
        proc.log_path.unlink(missing_ok=True)


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # every member has exited already
        os.killpg(pgid, sig)


def _group_alive(proc: subprocess.Popen) -> bool:
    proc.poll()  # reap the leader once it exits, so it stops counting as a member
    try:
        os.killpg(proc.pid, 0)
    except ProcessLookupError:
        return False
    return True
