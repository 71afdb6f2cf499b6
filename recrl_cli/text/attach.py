"""Wiring: make the text encoder the item representation of an MTL base (also RMTL's actor).

Every :class:`FeatureEmbedding` of a base is wrapped by :class:`TextFeatureEmbedding`, which keeps its output
layout [B, F·D] (so no base changes) and replaces (``item_encoder=text``) or adds to (``id+text``) the ``item``
field's D columns the projected text vector. One encoder (one language model) is shared by all wrappers of a
model, e.g. SingleTask's T embeddings.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
from torch import nn

from recrl_cli.errors import ConfigError
from recrl_cli.nets.layers import FeatureEmbedding
from recrl_cli.text.backend import looks_like_path
from recrl_cli.text.config import check_text_options, uses_text
from recrl_cli.text.encoder import TextItemEncoder, build_text_encoder, empty_text_encoder
from recrl_cli.text.items import load_item_texts

CACHE_DIR = "text_cache"  # inside the prepared directory


class TextFeatureEmbedding(nn.Module):
    """x [B, F] -> [B, F·D]: a :class:`FeatureEmbedding` whose ``item`` field reads the text encoder."""

    def __init__(self, inner: FeatureEmbedding, text: TextItemEncoder, field: int, combine: str) -> None:
        super().__init__()
        self.inner, self.text, self.combine = inner, text, combine
        self.register_buffer("item_field", torch.tensor(field))  # saved: a predictor rebuilds from weights
        self.field = field
        self.embed_dim, self.cardinalities = inner.embed_dim, inner.cardinalities

    @property
    def num_fields(self) -> int:
        return self.inner.num_fields

    @property
    def output_dim(self) -> int:
        return self.inner.output_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f, width = self.field, self.inner.num_fields * self.embed_dim
        full = self.inner(x)  # [B, F·D] (+ the history encoder's columns, which read the id table)
        emb = full[:, :width].view(x.shape[0], self.inner.num_fields, -1)  # [B, F, D]
        item = self.text(x[:, f])  # [B, D]
        if self.combine == "id+text":
            item = item + emb[:, f]
        ids = torch.cat([emb[:, :f], item.unsqueeze(1), emb[:, f + 1 :]], 1).flatten(1)
        return torch.cat([ids, full[:, width:]], 1)


def _wrap(model: nn.Module, make: Any) -> int:
    """Replace every FeatureEmbedding child of ``model`` (at any depth) by ``make(child)``; return the count."""
    count = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, FeatureEmbedding) and not isinstance(parent, TextFeatureEmbedding):
                setattr(parent, name, make(child))
                count += 1
    if not count:
        raise ConfigError(f"{type(model).__name__} has no feature embedding to give an item text encoder")
    return count


def attach_item_text(
    model: nn.Module, cfg: Any, prepared_dir: Path, feature_names: list[str], device: torch.device
) -> TextItemEncoder | None:
    """Give ``model`` the text item encoder ``cfg`` asks for (None and no change when item_encoder=id)."""
    if not uses_text(cfg):
        return None
    check_text_options(cfg)
    if "item" not in feature_names:
        raise ConfigError("--item-encoder text needs an 'item' feature in the prepared dataset")
    field = feature_names.index("item")
    texts = load_item_texts(Path(prepared_dir))
    encoder = build_text_encoder(cfg, texts, cfg.embed_dim, device, Path(prepared_dir) / CACHE_DIR)
    _wrap(model, lambda inner: TextFeatureEmbedding(inner, encoder, field, cfg.item_encoder))
    return encoder


def rebuild_item_text(model: nn.Module, cfg: Any, weights: dict[str, torch.Tensor]) -> None:
    """Shape ``model`` like an exported text model before ``load_state_dict(weights)`` (no data needed)."""
    if not uses_text(cfg):
        return
    key = next((k for k in weights if k.endswith("item_field")), None)
    if key is None:
        raise ConfigError(
            "the saved model was trained with --item-encoder text but has no text encoder weights"
        )
    prefix = key[: -len("item_field")]
    encoder = empty_text_encoder(cfg, weights, f"{prefix}text.", cfg.embed_dim)
    field = int(weights[key])
    _wrap(model, lambda inner: TextFeatureEmbedding(inner, encoder, field, cfg.item_encoder))


def agent_text_factory(cfg: Any, prepared_dir: Path, device: torch.device) -> Any:
    """For the RL agents: ``factory(d) -> TextItemEncoder`` over the KuaiRand items (row 0 = padding).

    The language model runs (frozen) or is loaded (finetune) once here; each call makes a new encoder with its
    own projection, so the actor and anything built later get independent parameters. ``keep_ids`` tells the
    policy's item kernel whether to keep the id row (``id+text``) or read only features + text (``text``).
    """
    check_text_options(cfg)
    texts = load_item_texts(Path(prepared_dir))
    proto = build_text_encoder(cfg, texts, 1, device, Path(prepared_dir) / CACHE_DIR)
    hidden = proto.proj.in_features

    def factory(out_dim: int) -> TextItemEncoder:
        if proto.mode == "frozen":
            enc = TextItemEncoder("frozen", hidden, out_dim, table=proto.table)
        else:
            model = copy.deepcopy(proto.model)
            enc = TextItemEncoder(
                "finetune", hidden, out_dim, model=model, tokens=proto.tokens, mask=proto.mask
            )
        enc.keep_ids = cfg.item_encoder == "id+text"
        return enc.to(device)

    return factory


def preflight_text(cfg: Any, prepared_dir: Path) -> None:
    """Cheap checks before any run is created: the extra is installed, the model path exists, item text is there."""
    if not uses_text(cfg):
        return
    from recrl_cli.text.backend import require_transformers
    from recrl_cli.text.items import ITEM_TEXT

    require_transformers()
    if looks_like_path(cfg.text_model) and not Path(cfg.text_model).expanduser().is_dir():
        raise ConfigError(f"--text-model {cfg.text_model}: no such directory")
    if not (Path(prepared_dir) / ITEM_TEXT).is_file():
        raise ConfigError(
            f"{Path(prepared_dir) / ITEM_TEXT} is missing; build it with `recrl text items {prepared_dir} ...`"
        )
