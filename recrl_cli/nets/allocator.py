"""Opt-in glibc malloc setting for CPU training: reuse freed tensor memory instead of page-faulting it afresh.

Why: torch's CPU allocator is plain ``malloc``/``free``. glibc serves every block above its mmap threshold
(dynamic, at most 32 MiB) with a fresh ``mmap`` and returns it to the kernel on ``free``, and it trims the heap
top above the trim threshold. A training step allocates and frees the same large tensors every step
(activations [E, B, d], their gradients, the dense [V, D] embedding gradient), so each step page-faults them
in again and the kernel zeroes every page before torch writes it. For a 34 MB ``relu`` on one core that is
~18 ms instead of ~3 ms; on a whole MoE/PLE train step at batch 2048 it is ~5-13 % of the time
(benchmarks/RESULTS.md).

With both thresholds raised, large blocks come from the heap and freed memory stays there for the next step:
the same numbers, fewer page faults, a resident set that stays at its peak. This is a process-wide setting,
so the library never applies it on its own; an entry point (a benchmark, a training command) opts in.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

_M_TRIM_THRESHOLD = -1  # glibc <malloc.h> parameter numbers
_M_MMAP_THRESHOLD = -3
DEFAULT_THRESHOLD_BYTES = 1 << 30  # above any activation of the MTL bases at batch 2048


def retain_freed_cpu_memory(threshold_bytes: int = DEFAULT_THRESHOLD_BYTES) -> bool:
    """Serve blocks below ``threshold_bytes`` from the heap and keep up to that much freed memory there.

    Returns True if applied, False where the C library is not glibc (macOS, Windows, musl): then nothing
    changes. Idempotent; cannot be undone in the same process.
    """
    if not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    libc = ctypes.CDLL(name)
    if not hasattr(libc, "gnu_get_libc_version"):  # mallopt exists on musl too, but ignores these
        return False
    libc.mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    ok_mmap = libc.mallopt(_M_MMAP_THRESHOLD, threshold_bytes)
    ok_trim = libc.mallopt(_M_TRIM_THRESHOLD, threshold_bytes)
    return bool(ok_mmap and ok_trim)
