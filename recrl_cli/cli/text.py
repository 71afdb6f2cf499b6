"""``recrl text items`` and ``recrl text init-model``: item text for the text item encoder (optional extra)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from recrl_cli.cli.common import console, friendly_errors
from recrl_cli.errors import ConfigError

text_app = typer.Typer(
    help="Item text for `--item-encoder text`: build item_text.parquet, make a small model over its words.",
    no_args_is_help=True,
)


def items(
    data: Annotated[Path, typer.Argument(help="Prepared dataset directory (written by `recrl prepare`).")],
    captions: Annotated[
        Path | None,
        typer.Option(
            "--captions", help="KuaiRand kuairand_video_captions.csv, or a synthetic item_text.csv."
        ),
    ] = None,
    categories: Annotated[
        Path | None, typer.Option("--categories", help="KuaiRand kuairand_video_categories.csv (optional).")
    ] = None,
    properties: Annotated[
        Path | None,
        typer.Option("--properties", help="RetailRocket raw directory: hashed property tokens become words."),
    ] = None,
) -> None:
    """Write DATA/item_text.parquet: one text per encoded item, from captions or RetailRocket properties."""
    from recrl_cli.data.manifest import read_manifest, verify_prepared
    from recrl_cli.text.items import texts_from_captions, texts_from_properties, write_item_texts

    if (captions is None) == (properties is None):
        raise ConfigError("pass exactly one of --captions FILE or --properties RAW_DIR")
    if categories is not None and captions is None:
        raise ConfigError("--categories goes with --captions")
    # A missing dataset fails first, with the usual hint; damaged splits are refused like every loader does.
    verify_prepared(data, read_manifest(data))
    if captions is not None:
        table = texts_from_captions(data, captions, categories)
    else:
        table = texts_from_properties(data, properties)
    path = write_item_texts(data, table)
    console.print(f"{table.height:,} item texts written to {escape(str(path))}")


def init_model(
    out: Annotated[Path, typer.Argument(help="Directory to write the model into (save_pretrained layout).")],
    data: Annotated[
        Path, typer.Option("--data", help="Prepared dataset whose item_text.parquet gives the words.")
    ],
    hidden: Annotated[int, typer.Option("--hidden", help="Hidden width H.", min=2)] = 64,
    layers: Annotated[int, typer.Option("--layers", help="Transformer layers.", min=1)] = 2,
    heads: Annotated[int, typer.Option("--heads", help="Attention heads (divides --hidden).", min=1)] = 2,
    min_count: Annotated[
        int, typer.Option("--min-count", help="Words seen fewer times map to [UNK].", min=1)
    ] = 1,
    seed: Annotated[int, typer.Option("--seed", help="Weight initialisation seed.")] = 0,
) -> None:
    """Write a randomly initialised BERT whose vocabulary is the item texts' words (train it with finetune)."""
    from recrl_cli.text.items import load_item_texts
    from recrl_cli.text.vocab import init_text_model

    texts = load_item_texts(data)
    init_text_model(out, texts, hidden=hidden, layers=layers, heads=heads, intermediate=2 * hidden,
                    min_count=min_count, seed=seed)  # fmt: skip
    console.print(
        f"random BERT (H={hidden}, {layers} layers) over the words of {escape(str(data))} in {escape(str(out))}"
    )


text_app.command("items")(friendly_errors(items))
text_app.command("init-model")(friendly_errors(init_model))
