"""``recrl algos``: what is registered, and every option with its meaning and default.

The same tables end ``recrl train ALGO --help`` and ``recrl ablate ALGO --help`` (:class:`AlgoCommand`). They are
read from :mod:`recrl_cli.algorithms.options` (plain data cached next to the code), so neither waits for torch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import typer
from rich.table import Table
from typer.core import TyperCommand

from recrl_cli.algorithms import catalog
from recrl_cli.algorithms.options import default_text, flag_text, tables
from recrl_cli.cli.common import console, friendly_errors


def options_text(
    records: list[dict[str, Any]], title: str, keep: Callable[[str], bool] = lambda name: True
) -> str:
    """One option per entry: ``--name KIND  [default: x]``, then its meaning wrapped below (fits any width)."""
    import shutil
    import textwrap

    width = max(40, min(console.width or 80, shutil.get_terminal_size((80, 24)).columns, 100))
    lines = [f"{title}:"]
    for record in records:
        if not keep(record["name"]):
            continue
        choices = record.get("choices")
        meaning = record["help"] + (f" ({' | '.join(choices)})" if choices else "")
        lines.append(f"  {flag_text(record)}  [default: {default_text(record)}]")
        lines += textwrap.wrap(meaning, width - 1, initial_indent="      ", subsequent_indent="      ")
    return "\n".join(lines)


def print_algorithm_options(name: str) -> None:
    """The ``[model]`` options of ``name``, the ``[train]`` ones it reads, and those it refuses."""
    entry = catalog.entry(name)
    options = tables()
    say = lambda text: console.print(text, markup=False, highlight=False, soft_wrap=True)  # noqa: E731
    say(f"\n{entry.name} ({entry.family}): {entry.summary}\n")
    say(options_text(options["model"][name], f"{name} options ([model] section)"))
    reads = lambda field: catalog.reads_train_field(name, field)  # noqa: E731
    say("\n" + options_text(options["train"], f"training options {name} reads ([train] section)", reads))
    own = {record["name"] for record in options["model"][name]}  # e.g. an agent's --batch-size: its own
    refused = [f for f in catalog.LOOP_FIELDS if not reads(f) and f not in own]
    if refused:
        shown = ", ".join("--" + f.replace("_", "-") for f in refused)
        say(f"\nNot used by {name}, so refused (the error says what to set instead): {shown}")
    say(
        "\nGive any of them as --option value (a flag as --flag or --no-flag) or --set section.option=value; "
        "the prepared data as --data DIR."
    )


class AlgoCommand(TyperCommand):
    """``recrl train|ablate ALGO --help``: the command's help, then ALGO's own options (:func:`print_algorithm_options`)."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if any(a in self.get_help_option_names(ctx) for a in args):
            ctx.meta["recrl.algo"] = next((a for a in args if not a.startswith("-")), None)
        return super().parse_args(ctx, args)

    def format_help(self, ctx: Any, formatter: Any) -> None:
        super().format_help(ctx, formatter)
        algo = ctx.meta.get("recrl.algo")
        if algo in catalog.ENTRIES:
            print_algorithm_options(algo)
        else:
            console.print(
                "The options of each algorithm: [bold]recrl train ALGO --help[/] or [bold]recrl algos ALGO[/]."
            )


def algos(
    name: Annotated[str | None, typer.Argument(help="Show the options of this algorithm.")] = None,
) -> None:
    """List registered algorithms, or the options (meaning and default) of one of them."""
    if name is None:
        table = Table(title="registered algorithms")
        for column in ("name", "family", "summary"):
            table.add_column(column)
        for spec in catalog.ENTRIES.values():
            table.add_row(f"[cyan]{spec.name}[/]", spec.family, spec.summary)
        console.print(table)
        console.print("Options of one: [bold]recrl algos NAME[/] (or [bold]recrl train NAME --help[/])")
        return
    print_algorithm_options(name)
    defaults = catalog.data_defaults(name)
    data = []
    for record in tables()["data"]:  # this algorithm's defaults; the directory is given as --data everywhere
        record = {**record, "default": defaults.get(f"data.{record['name']}", record["default"])}
        data.append({**record, "name": "data", "kind": "dir"} if record["name"] == "prepared_dir" else record)
    console.print("\n" + options_text(data, "data options ([data] section)"), markup=False, highlight=False)


algos_command = friendly_errors(algos)
