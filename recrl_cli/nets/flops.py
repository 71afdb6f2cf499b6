"""Analytic FLOP count of a network's forward pass per sample, for throughput bounds (samples/s ≤ rate/FLOPs).

Convention: every linear map contributes in·out multiply-adds (MACs) per row it is applied to; embeddings,
bias adds, activations, dropout, softmax, gate mixing and AITM's elementwise attention count 0 (all well under
1 % of the total for the MTL bases). FLOPs = 2·MACs; a training step ≈ 3× the forward FLOPs (the backward pass
runs one matmul for the input gradient and one for the weight gradient per forward matmul).

The count comes from shapes, not timing: one forward pass on a single all-zero sample runs with hooks on
``nn.Linear`` and the batched ``StackedLinear``, so exactly the maps the forward uses are counted (all MoE
experts, gates, PLE's missing last shared gate, AITM's two attention items, SingleTask's T networks).
"""

from __future__ import annotations

import torch
from torch import nn

from recrl_cli.errors import ConfigError
from recrl_cli.nets.layers import FeatureEmbedding, StackedLinear


def _num_fields(model: nn.Module) -> int:
    for module in model.modules():
        if isinstance(module, FeatureEmbedding):
            return module.num_fields
    raise ConfigError(f"{type(model).__name__} has no FeatureEmbedding; pass num_fields explicitly")


def forward_macs_per_sample(model: nn.Module, num_fields: int | None = None) -> int:
    """Multiply-adds of one forward pass for one sample x [1, F] (F from the model's FeatureEmbedding)."""
    fields = _num_fields(model) if num_fields is None else num_fields
    total = 0

    def count(module: nn.Module, inputs: tuple[torch.Tensor, ...], _output: torch.Tensor) -> None:
        nonlocal total
        # x [..., in] (Linear) or [G, N, in] (StackedLinear; a stride-0 expand still counts G·N rows):
        # rows·in·out = numel(x)·out. With a batch of one sample this is the per-sample count.
        total += inputs[0].numel() * module.out_features

    hooks = [
        m.register_forward_hook(count) for m in model.modules() if isinstance(m, (nn.Linear, StackedLinear))
    ]
    was_training = model.training
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, fields, dtype=torch.long, device=device))
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    return total


def forward_flops_per_sample(model: nn.Module, num_fields: int | None = None) -> int:
    """FLOPs (2·MACs) of one forward pass per sample."""
    return 2 * forward_macs_per_sample(model, num_fields)


def train_flops_per_sample(model: nn.Module, num_fields: int | None = None) -> int:
    """FLOPs of one training step per sample: forward + backward ≈ 3× forward."""
    return 3 * forward_flops_per_sample(model, num_fields)
