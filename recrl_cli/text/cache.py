"""Frozen item embeddings on disk, keyed by the model and the texts, so a frozen model encodes each item once.

Key = sha256(model fingerprint, max_len, pooling, every item text in id order). A changed text, an added item,
another model (any byte of its config, vocabulary or weights) or another max_len gives another key, so a stale
entry is never read. Entries are ``<cache_dir>/<key>.pt`` holding the FloatTensor [V, H]; written to a
temporary file and renamed, so an interrupted run leaves no half-written entry.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import torch

POOLING = "mean"  # mean of the last hidden states over the real (unpadded) tokens


def cache_key(fingerprint: str, texts: list[str], max_len: int) -> str:
    digest = hashlib.sha256(f"{fingerprint}\n{max_len}\n{POOLING}\n{len(texts)}\n".encode())
    for text in texts:
        digest.update(text.encode("utf-8"))
        digest.update(b"\x00")
    return digest.hexdigest()


def cached_embeddings(
    cache_dir: Path, key: str, compute: Callable[[], torch.Tensor]
) -> tuple[torch.Tensor, bool]:
    """(table [V, H] on the CPU, hit): read ``key`` from ``cache_dir`` or compute and store it."""
    path = Path(cache_dir) / f"{key}.pt"
    if path.is_file():
        try:
            return torch.load(path, map_location="cpu", weights_only=True), True
        except (OSError, RuntimeError, EOFError):
            pass  # a damaged entry is recomputed and overwritten
    table = compute().detach().to("cpu", torch.float32).contiguous()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    torch.save(table, tmp)
    tmp.replace(path)
    return table, False
