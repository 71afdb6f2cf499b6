"""Device choice and reproducibility switches."""

from __future__ import annotations

import random

import numpy as np
import torch

from recrl_cli.errors import ConfigError


def resolve_device(name: str) -> torch.device:
    """``auto`` → CUDA when available, else CPU; ``cuda`` without a GPU is a one-line error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda was requested but no CUDA device is available (use auto or cpu)")
    if name not in ("cpu", "cuda"):
        raise ConfigError(f"unknown device '{name}'; use auto, cpu or cuda")
    return torch.device(name)


def seed_everything(seed: int, threads: int = 0) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA); fix the thread count when asked.

    CPU kernels are deterministic for a fixed thread count, which is what makes two runs with the
    same seed give identical metrics. cuDNN autotuning is disabled for the same reason.
    """
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    if threads > 0:
        torch.set_num_threads(threads)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
