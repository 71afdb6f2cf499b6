"""Assertions shared by the bad-input and fault tests (tests/test_cli_errors.py, tests/test_faults_*.py).

Every failure a user can cause must end the same way: exit code 1, exactly one ``error: ...`` line on
stderr, no traceback, nothing half-written, and every file that existed before left byte-for-byte as
it was. These helpers assert exactly that, for in-process (CliRunner) and real-process runs.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def one_line_error(result, code: int = 1) -> str:
    """The single error line of a failed in-process (CliRunner) command; fails the test on anything else.
    ``code``: the exit status expected (1 for refused input, 130 / 143 for a command stopped by Ctrl-C / SIGTERM)."""
    assert result.exit_code == code, result.output
    # An uncaught exception also exits with 1 under CliRunner: only a clean exit is acceptable.
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    output = ANSI.sub("", result.output)
    assert "Traceback" not in output
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, output
    assert lines[0].startswith("error: ")
    assert result.stdout.strip() == ""  # errors go to stderr, stdout stays clean for pipes
    return lines[0]


def one_line_process_error(proc: subprocess.CompletedProcess, code: int = 1) -> str:
    """The same contract for a real ``recrl`` process (signals, imports, exit codes as a shell sees them)."""
    stderr = ANSI.sub("", proc.stderr)
    assert proc.returncode == code, f"rc={proc.returncode}\n{proc.stdout}\n{stderr}"
    assert "Traceback" not in stderr and "Traceback" not in proc.stdout, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: "), stderr
    return lines[0]


def entries(directory: Path) -> list[str]:
    """Names in a directory, sorted ([] when it does not exist)."""
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


def tree_digest(root: Path) -> dict[str, str]:
    """``relative path -> sha256`` of every file under ``root`` (hidden ones included): compare before
    and after a failing command to prove it touched nothing."""
    digest: dict[str, str] = {}
    if not root.exists():
        return digest
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            digest[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digest


def run_recrl(
    *args: object, cwd: Path, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess:
    """Run ``python -m recrl_cli ARGS`` as a separate process in ``cwd`` (text mode, no colour)."""
    full_env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "250", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "recrl_cli", *map(str, args)],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
