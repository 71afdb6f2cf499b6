"""The item-text encoder as an nn.Module: item ids -> projected text vectors.

Shapes: V items (encoded ids 0..V-1), L tokens per item, H the language model's hidden width, D the width the
host network wants (its embedding width), N ids looked up at once.

Two modes (``text_mode``):

- ``frozen``: the language model runs once over every item (no gradient, eval mode) and only its mean-pooled
  output table [V, H] is kept, as a buffer, cached on disk (:mod:`recrl_cli.text.cache`). The module then holds
  no language model at all, so training cannot change it; only ``proj`` (Linear H -> D) learns.
- ``finetune``: the module owns the language model and the tokenised texts [V, L]; a forward pass runs the model
  on the distinct ids of the batch (each item once, however often it occurs) and gradients flow into it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from recrl_cli.errors import ConfigError
from recrl_cli.text.backend import load_language_model, model_from_config
from recrl_cli.text.cache import cache_key, cached_embeddings


def tokenize(tokenizer: Any, texts: list[str], max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids and attention mask, both LongTensor [V, L] (L = the longest text, at most ``max_len``)."""
    enc = tokenizer(texts, padding=True, truncation=True, max_length=max_len, return_tensors="pt")
    return enc["input_ids"].long(), enc["attention_mask"].long()


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of hidden [N, L, H] over the real tokens of mask [N, L] -> [N, H] (an all-pad row gives 0)."""
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp_min(1.0)


def run_model(model: Any, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean-pooled last hidden states [N, H] of tokens/mask [N, L].

    Columns after the longest text of these N are padding for all of them (right padding) and are cut off
    first: attention and pooling ignore padding, so the result is the same at a fraction of the cost."""
    width = int(mask.sum(1).max().clamp_min(1))
    tokens, mask = tokens[:, :width], mask[:, :width]
    return mean_pool(model(input_ids=tokens, attention_mask=mask).last_hidden_state, mask)


@torch.no_grad()
def encode_all(model: Any, tokens: torch.Tensor, mask: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Frozen encoding of every item in batches of ``batch_size``: tokens/mask [V, L] -> [V, H] (V >= 1)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    # Batches of similar length: each is cut to its own longest text (run_model), so short captions do not pay
    # for the longest one. The rows are put back in id order at the end.
    order = mask.sum(1).argsort()
    out = [run_model(model, tokens[idx].to(device), mask[idx].to(device)) for idx in order.split(batch_size)]
    model.train(was_training)
    table = torch.empty(tokens.shape[0], out[0].shape[1], dtype=out[0].dtype, device=out[0].device)
    table[order.to(table.device)] = torch.cat(out)
    return table


class TextItemEncoder(nn.Module):
    """ids [N] -> [N, D]: ``proj`` of the frozen table row (frozen) or of the live model's output (finetune)."""

    def __init__(self, mode: str, hidden: int, out_dim: int, *, table: torch.Tensor | None = None,
                 model: Any = None, tokens: torch.Tensor | None = None, mask: torch.Tensor | None = None) -> None:  # fmt: skip
        super().__init__()
        self.mode = mode
        self.proj = nn.Linear(hidden, out_dim)
        self.cache_hit: bool | None = None  # frozen: whether the table came from the disk cache
        self.keep_ids = True  # agents: whether the item kernel keeps its id row beside the text
        if mode == "frozen":
            self.register_buffer("table", table)  # [V, H], saved with the model so an export stands alone
        elif mode == "finetune":
            self.model = model
            self.register_buffer("tokens", tokens)  # [V, L]
            self.register_buffer("mask", mask)  # [V, L]
        else:
            raise ConfigError(f"text_mode must be frozen or finetune, got {mode!r}")

    @property
    def num_items(self) -> int:
        return int((self.table if self.mode == "frozen" else self.tokens).shape[0])

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if self.mode == "frozen":
            return self.proj(self.table[ids])
        flat = ids.reshape(-1)
        uniq, inverse = torch.unique(flat, return_inverse=True)  # run the model once per distinct item
        vectors = run_model(self.model, self.tokens[uniq], self.mask[uniq])  # [U, H]
        return self.proj(vectors)[inverse].view(*ids.shape, -1)

    def item_vectors(self) -> torch.Tensor:
        """[V, D] for every item (the RL agents' item table)."""
        return self.forward(torch.arange(self.num_items, device=self.proj.weight.device))


def build_text_encoder(
    cfg: Any, texts: list[str], out_dim: int, device: torch.device, cache_dir: Path
) -> TextItemEncoder:
    """The encoder ``cfg`` (text_model, text_mode, text_max_len) asks for, over ``texts`` (one per item id)."""
    lm = load_language_model(cfg.text_model, device)
    tokens, mask = tokenize(lm.tokenizer, texts, cfg.text_max_len)
    if cfg.text_mode == "frozen":
        key = cache_key(lm.fingerprint, texts, cfg.text_max_len)
        table, hit = cached_embeddings(cache_dir, key, lambda: encode_all(lm.model, tokens, mask))
        enc = TextItemEncoder("frozen", lm.hidden_size, out_dim, table=table)
        enc.cache_hit = hit
        return enc.to(device)
    return TextItemEncoder("finetune", lm.hidden_size, out_dim, model=lm.model, tokens=tokens, mask=mask).to(
        device
    )


def empty_text_encoder(
    cfg: Any, weights: dict[str, torch.Tensor], prefix: str, out_dim: int
) -> TextItemEncoder:
    """An encoder shaped like the one saved under ``prefix`` in ``weights`` (filled by ``load_state_dict``).

    Frozen: only shapes are needed. Finetune: the language model's architecture is read from ``text_model``'s
    local config (its weights come from the saved state)."""
    if cfg.text_mode == "frozen":
        table = weights[f"{prefix}table"]
        return TextItemEncoder("frozen", table.shape[1], out_dim, table=torch.zeros_like(table))
    model = model_from_config(cfg.text_model)
    tokens = weights[f"{prefix}tokens"]
    return TextItemEncoder("finetune", int(model.config.hidden_size), out_dim, model=model,
                           tokens=torch.zeros_like(tokens), mask=torch.zeros_like(tokens))  # fmt: skip
