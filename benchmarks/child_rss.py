"""Run one benchmark stage in a fresh interpreter and report its wall time and its own peak RSS.

Shared by the ``bench_prepare_*`` scripts. A stage is a piece of Python that sets ``result`` (any
JSON-able value); it runs in a child process so that its peak resident memory (VmHWM on Linux,
``ru_maxrss`` elsewhere) is measured alone, untouched by the parent or by earlier stages. The child
sees ``argv`` (its arguments as strings) and ``args`` (the decoded JSON of ``argv[1]`` when given);
the wall time is taken inside the child around the stage, imports of the stage included.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

PRELUDE = """
import json, resource, sys, time
from pathlib import Path

def peak_mib():
    try:  # VmHWM: this process's own peak RSS (Linux)
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale / 1024

argv = sys.argv[1:]
args = json.loads(argv[1]) if len(argv) > 1 else {}
_start = time.perf_counter()
"""
EPILOGUE = """
print(json.dumps({"wall_s": time.perf_counter() - _start, "peak_mib": peak_mib(), "result": result}))
"""


def run_child(stage: str, body: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run ``body`` (sets ``result``) in a new interpreter; return {wall_s, peak_mib, result}.

    ``stage`` names the run in the child's ``argv[0]`` and in the failure message; a failing child
    ends the benchmark with its stderr.
    """
    cmd = [sys.executable, "-c", PRELUDE + body + EPILOGUE, stage, json.dumps(args or {})]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"{stage} failed:\n{done.stderr.strip()}")
    return json.loads(done.stdout.strip().splitlines()[-1])
