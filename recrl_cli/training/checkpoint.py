"""Atomic checkpoint files.

A checkpoint is one ``torch.save`` dict written to a temporary file and renamed into place, so an
interrupt while writing never leaves a corrupt file behind.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from recrl_cli.errors import DataError


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` to ``path`` atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` onto the CPU."""
    if not path.is_file():
        raise DataError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises many types for a damaged file
        raise DataError(f"cannot read checkpoint {path}: {str(exc).splitlines()[0]}") from None
