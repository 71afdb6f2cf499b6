"""Analytic matmul FLOP count of a network per sample, for throughput bounds (samples/s ≤ rate / FLOPs).

What is counted: every linear map, i.e. ``nn.Linear`` and the batched ``StackedLinear`` (all MoE/PLE experts,
their gates, PLE's missing last shared gate, AITM's transfer and V/K/Q maps, SingleTask's T networks), as
in·out multiply-adds (MACs) per row it is applied to; FLOPs = 2·MACs, i.e. 2·m·n·k per [m×k]@[k×n] product.
A training step counts 3× the forward: the backward of each forward matmul is one matmul for the input
gradient and one for the weight gradient (every matmul input of the bases descends from the learnable
embedding, so both are needed; ``tests/test_flops.py`` checks this against torch's FlopCounterMode).

What is not counted: the embedding lookup and its (dense) gradient, bias adds, activations, dropout, softmax,
the gate-mixing bmm of MoE/PLE (M·E·d MACs per sample, < 1 % of the matmuls), AITM's elementwise attention,
the loss and the optimizer update. These are memory-bound: their cost is bytes moved, not FLOPs, so a matmul
bound cannot describe them and they are what separates a measured rate from the bound.

The count comes from shapes, not timing: one forward pass on a single all-zero sample runs with hooks on the
linear maps, so exactly the maps the forward uses are counted.
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
