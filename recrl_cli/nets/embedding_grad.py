"""Dense embedding gradients without a fresh [V, D] allocation every step (the same numbers, less paging).

Why: the dense backward of an embedding lookup allocates a zero [V, D] gradient every step (52 MB for the
RetailRocket item table at D = 128) and adds the looked-up rows' gradients into it. On the CPU that block is
above glibc's largest mmap threshold, so every step maps it afresh and the kernel zeroes each page on first
touch (page faults) before torch zeroes it again, and ``zero_grad(set_to_none=True)`` unmaps it. That is
~15 % of a SharedBottom/SingleTask train step at batch 2048 on one core.

How: the tables emit a sparse COO gradient (``FeatureEmbedding.sparse_grad``: the B·F looked-up row ids and
their [B·F, D] gradients, no [V, D] allocation), and :meth:`DenseEmbeddingGrads.densify`, called after
``backward()`` and before ``optimizer.step()``, scatters it into one dense buffer per table that lives as long
as the model: zero, then ``index_add_`` (duplicate ids summed) — the same operations the dense backward runs,
into memory that is already mapped. The optimizer then sees exactly the dense gradient it would have seen,
so dense Adam semantics (every row's moments and L2 weight decay updated every step) are unchanged. This is
not SparseAdam, which would update only the looked-up rows and has no weight decay.

Caveat: ``weight.grad`` is the same tensor every step, overwritten by the next ``densify``; code that keeps a
reference to an old gradient must copy it.
"""

from __future__ import annotations

import torch
from torch import nn

from recrl_cli.nets.layers import FeatureEmbedding


class DenseEmbeddingGrads:
    """Switches every :class:`FeatureEmbedding` of ``model`` to sparse gradients and densifies them on demand."""

    def __init__(self, model: nn.Module) -> None:
        self.embeddings = [m for m in model.modules() if isinstance(m, FeatureEmbedding)]
        for embedding in self.embeddings:
            embedding.sparse_grad = True
        self._buffers: dict[int, torch.Tensor] = {}

    def densify(self) -> None:
        """Replace each table's sparse ``weight.grad`` (if any) by the equal dense gradient [V, D]."""
        for i, embedding in enumerate(self.embeddings):
            weight = embedding.weight
            grad = weight.grad
            if grad is None or not grad.is_sparse:
                continue  # no backward since the last zero_grad, or already dense
            buffer = self._buffers.get(i)
            if buffer is None or buffer.shape != weight.shape or buffer.device != weight.device:
                buffer = self._buffers[i] = torch.empty_like(weight)
            # Uncoalesced COO straight from the embedding backward: indices [1, B·F], values [B·F, D];
            # index_add_ sums repeated ids, so no coalesce (a sort) is needed.
            buffer.zero_().index_add_(0, grad._indices()[0], grad._values())
            weight.grad = buffer
