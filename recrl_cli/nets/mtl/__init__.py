"""Registry of the multi-task base networks: name -> builder; every base maps ids [B, F] to logits [B, T]."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from torch import nn

from recrl_cli.errors import RegistryError
from recrl_cli.nets.mtl.aitm import AITM
from recrl_cli.nets.mtl.config import MTLConfig
from recrl_cli.nets.mtl.esmm import ESMM
from recrl_cli.nets.mtl.moe import MMoE, OMoE
from recrl_cli.nets.mtl.ple import PLE
from recrl_cli.nets.mtl.sharedbottom import SharedBottom
from recrl_cli.nets.mtl.singletask import SingleTask


@dataclass(frozen=True)
class BaseSpec:
    """A registered base: CLI name, builder ``(cardinalities, num_tasks, cfg) -> nn.Module``, summary line."""

    name: str
    build: Callable[[Sequence[int], int, MTLConfig], nn.Module]
    summary: str


MTL_BASES: dict[str, BaseSpec] = {
    spec.name: spec
    for spec in (
        BaseSpec("singletask", SingleTask, "One independent embedding, bottom and tower per task."),
        BaseSpec("sharedbottom", SharedBottom, "Shared embedding and bottom MLP, one tower per task."),
        BaseSpec("omoe", OMoE, "Expert MLPs mixed by one softmax gate shared by all tasks."),
        BaseSpec("mmoe", MMoE, "Expert MLPs mixed by one softmax gate per task."),
        BaseSpec("ple", PLE, "Progressive layered extraction: shared + task-specific experts per level."),
        BaseSpec("esmm", ESMM, "CTR and CVR towers; CTCVR = CTR × CVR (exactly 2 tasks)."),
        BaseSpec("aitm", AITM, "Per-task bottoms with attention transfer from task t-1 to task t."),
    )
}


def build_base(name: str, cardinalities: Sequence[int], num_tasks: int, cfg: MTLConfig) -> nn.Module:
    """Build the base called ``name`` (RegistryError if unknown; ConfigError on bad sizes)."""
    spec = MTL_BASES.get(name)
    if spec is None:
        raise RegistryError(f"unknown model {name!r}; choose one of: {', '.join(MTL_BASES)}")
    return spec.build(cardinalities, num_tasks, cfg)


__all__ = ["MTL_BASES", "BaseSpec", "MTLConfig", "build_base"]
