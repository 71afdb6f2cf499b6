"""``recrl algos``: what is registered, and every option with its meaning and default."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from recrl_cli.algorithms.catalog import reads_train_field
from recrl_cli.algorithms.registry import ALGORITHMS, get_algorithm
from recrl_cli.cli.common import console, friendly_errors
from recrl_cli.config.fields import field_choices, field_help
from recrl_cli.config.schema import DataConfig, TrainConfig


def options_table(cls: type, section: str, keep: Callable[[str], bool] = lambda name: True) -> Table:
    table = Table(title=escape(f"[{section}] options"), title_justify="left")
    table.add_column("option", style="cyan", no_wrap=True)
    table.add_column("default")
    table.add_column("meaning")
    helps, choices = field_help(cls), field_choices(cls)
    for f in dataclasses.fields(cls):
        if not keep(f.name):
            continue
        default = f.default
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else str(default)
        meaning = helps[f.name] + (f" ({' | '.join(choices[f.name])})" if choices.get(f.name) else "")
        table.add_row(f"--{f.name.replace('_', '-')}", escape(shown), escape(meaning))
    return table


def algos(
    name: Annotated[str | None, typer.Argument(help="Show the options of this algorithm.")] = None,
) -> None:
    """List registered algorithms, or the options (meaning and default) of one of them."""
    if name is None:
        table = Table(title="registered algorithms")
        for column in ("name", "family", "summary"):
            table.add_column(column)
        for spec in ALGORITHMS.values():
            table.add_row(f"[cyan]{spec.name}[/]", spec.family, spec.summary)
        console.print(table)
        console.print("Options of one: [bold]recrl algos NAME[/]")
        return
    spec = get_algorithm(name)
    console.print(f"[bold]{spec.name}[/] ({spec.family}): {spec.summary}")
    console.print(options_table(spec.config_cls, "model"))
    console.print(options_table(TrainConfig, "train", lambda field: reads_train_field(name, field)))
    console.print(options_table(DataConfig, "data"))
    console.print("Set any of them as --option value, or --set section.option=value.")


algos_command = friendly_errors(algos)
