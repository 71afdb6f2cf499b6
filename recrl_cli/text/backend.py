"""The one module that imports ``transformers``: load a BERT-style model and tokenizer from local files only.

Nothing is ever downloaded: ``HF_HUB_OFFLINE`` is set before the import and every ``from_pretrained`` call
passes ``local_files_only=True``. ``--text-model`` is a directory written by ``save_pretrained`` or a model
name already present in the local Hugging Face cache. Without the ``text`` extra every entry point raises a
one-line :class:`ConfigError` (the CLI prints it and exits 1).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recrl_cli.errors import ConfigError

MISSING_EXTRA = (
    "the text item encoder needs the optional `text` extra (Hugging Face transformers): "
    "pip install 'recrl[text]'"
)
_MODEL_FILES = (".json", ".txt", ".safetensors", ".bin", ".model")


def require_transformers() -> Any:
    """The ``transformers`` module, imported offline; ConfigError (one line) when the extra is missing."""
    os.environ["HF_HUB_OFFLINE"] = "1"  # read when huggingface_hub is imported: no network, ever
    try:
        import transformers
    except ImportError:
        raise ConfigError(MISSING_EXTRA) from None
    # recrl draws its own progress; the library's bars and warnings would interleave with it.
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    return transformers


def looks_like_path(source: str) -> bool:
    """A filesystem path rather than a cached model name (``org/name`` is a name)."""
    return source.startswith(("/", ".", "~")) or (os.sep != "/" and os.sep in source)


@dataclass
class LanguageModel:
    """A loaded model: ``tokenizer``, ``model`` (an ``AutoModel``), hidden width H and a content fingerprint."""

    tokenizer: Any
    model: Any
    hidden_size: int
    fingerprint: str
    source: str


def model_fingerprint(source: str, model: Any = None) -> str:
    """sha256 over the names and bytes of a model directory's files (config, vocabulary, weights), so a cache
    entry dies when any of them changes. A cached name is identified by its snapshot commit instead."""
    path = Path(source)
    digest = hashlib.sha256()
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in _MODEL_FILES)
        for file in files:
            digest.update(f"{file.name}\n".encode())
            with open(file, "rb") as fh:
                while chunk := fh.read(1 << 20):
                    digest.update(chunk)
    else:
        commit = getattr(getattr(model, "config", None), "_commit_hash", None) or "unknown"
        digest.update(f"{source}@{commit}".encode())
    return digest.hexdigest()


def load_language_model(source: str, device: Any = "cpu") -> LanguageModel:
    """Tokenizer and encoder of ``source`` (local directory or locally cached name) on ``device``."""
    if not source:
        raise ConfigError("--text-model is empty: pass a local model directory")
    transformers = require_transformers()
    path = Path(source).expanduser()
    where = str(path) if path.is_dir() else source
    if not path.is_dir() and looks_like_path(source):
        raise ConfigError(f"--text-model {source}: no such directory")
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(where, local_files_only=True)
        model = transformers.AutoModel.from_pretrained(where, local_files_only=True)
    except (OSError, ValueError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"cannot load text model {source} from local files: {first}") from None
    hidden = getattr(model.config, "hidden_size", None)
    if not isinstance(hidden, int):
        raise ConfigError(f"text model {source} has no integer hidden_size in its config")
    model.to(device)
    return LanguageModel(tokenizer, model, hidden, model_fingerprint(where, model), where)


def model_from_config(source: str) -> Any:
    """A randomly initialised model with ``source``'s architecture (its weights then come from a state dict)."""
    transformers = require_transformers()
    path = Path(source).expanduser()
    where = str(path) if path.is_dir() else source
    try:
        config = transformers.AutoConfig.from_pretrained(where, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"cannot read the config of text model {source}: {str(exc).splitlines()[0]}"
        ) from None
    return transformers.AutoModel.from_config(config)
