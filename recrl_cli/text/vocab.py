"""A whole-word WordPiece vocabulary from item texts, and a small randomly initialised BERT over it.

Item text that is not natural language (RetailRocket's hashed property tokens, a synthetic generator's words) is
best treated as its own vocabulary: every word seen at least ``min_count`` times becomes one token, so nothing is
split into meaningless pieces. :func:`init_text_model` writes such a model (config, random weights and a BERT
tokenizer) with ``save_pretrained``; train it with ``--text-mode finetune``. Tests and benchmarks use the same
function: no weights are ever downloaded.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from recrl_cli.errors import ConfigError
from recrl_cli.text.backend import require_transformers

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def build_vocab(texts: list[str], min_count: int = 1, max_size: int = 30_000) -> list[str]:
    """Special tokens, then the lower-cased words of ``texts`` by descending count (ties by word)."""
    counts = Counter(word for text in texts for word in text.lower().split())
    words = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
    return [*SPECIAL_TOKENS, *words[: max(0, max_size - len(SPECIAL_TOKENS))]]


def init_text_model(
    out_dir: Path,
    texts: list[str],
    *,
    hidden: int = 32,
    layers: int = 2,
    heads: int = 2,
    intermediate: int = 64,
    max_len: int = 64,
    min_count: int = 1,
    seed: int = 0,
) -> Path:
    """Save a random BERT (``hidden`` wide, ``layers`` deep) with a tokenizer over ``texts``' words to ``out_dir``."""
    if hidden % heads:
        raise ConfigError(f"hidden ({hidden}) must be a multiple of heads ({heads})")
    transformers = require_transformers()
    import torch

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    vocab = build_vocab(texts, min_count=min_count)
    vocab_file = out_dir / "vocab.txt"
    vocab_file.write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tokenizer = transformers.BertTokenizer(str(vocab_file), do_lower_case=True)
    config = transformers.BertConfig(
        vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
        intermediate_size=intermediate, max_position_embeddings=max(max_len, 8), pad_token_id=0,
    )  # fmt: skip
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = transformers.BertModel(config)  # with its pooler, so AutoModel loads every weight from disk
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir
