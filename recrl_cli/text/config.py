"""The text-encoder options every model config that supports it carries (``item_encoder``, ``text_model`` ...).

The fields are declared once here (:func:`text_fields`) and validated by :func:`check_text_options`, so
``MTLConfig``, ``RMTLConfig`` and the agents' run config expose the same CLI options: ``--item-encoder text
--text-model PATH [--text-mode finetune] [--text-max-len 32]``.
"""

from __future__ import annotations

from typing import Any

from recrl_cli.config.fields import param
from recrl_cli.errors import ConfigError

ITEM_ENCODERS = ("id", "text", "id+text")
TEXT_MODES = ("frozen", "finetune")
TEXT_FIELDS = ("item_encoder", "text_model", "text_mode", "text_max_len")


def item_encoder_field() -> Any:
    return param(
        "id",
        help="Item representation: id (embedding table), text (language model over item text, projected to "
        "the embedding width) or id+text (their sum). Text needs the `text` extra and item_text.parquet.",
        choices=ITEM_ENCODERS,
    )


def text_model_field() -> Any:
    return param(
        "",
        help="Local directory (or name already in the local cache) of a BERT-style model; never downloaded.",
    )


def text_mode_field() -> Any:
    return param(
        "frozen",
        help="frozen: item vectors computed once and cached on disk; finetune: gradients flow into the model.",
        choices=TEXT_MODES,
    )


def text_max_len_field() -> Any:
    return param(32, help="Tokens per item text (longer texts are truncated).")


def check_text_options(cfg: Any, section: str = "model") -> None:
    """ConfigError on a bad combination of the text options of ``cfg`` (any dataclass carrying them)."""
    if cfg.item_encoder not in ITEM_ENCODERS:
        raise ConfigError(
            f"{section}.item_encoder must be one of {', '.join(ITEM_ENCODERS)}, got {cfg.item_encoder!r}"
        )
    if cfg.text_mode not in TEXT_MODES:
        raise ConfigError(
            f"{section}.text_mode must be one of {', '.join(TEXT_MODES)}, got {cfg.text_mode!r}"
        )
    max_len = cfg.text_max_len
    if isinstance(max_len, bool) or not isinstance(max_len, int) or max_len < 2:
        raise ConfigError(f"{section}.text_max_len must be an integer >= 2, got {max_len!r}")
    if cfg.item_encoder != "id" and not cfg.text_model:
        raise ConfigError(
            f"--item-encoder {cfg.item_encoder} needs --text-model PATH (a local model directory)"
        )


def uses_text(cfg: Any) -> bool:
    """Whether ``cfg`` asks for the text encoder (configs without the fields never do)."""
    return getattr(cfg, "item_encoder", "id") != "id"
