"""The ``recrl`` commands: a thin Typer layer over the library (parse, call, render).

The console script enters through :func:`recrl_cli.cli.app.main`; errors of every kind leave through
:class:`recrl_cli.cli.common.RecrlGroup`.
"""

from __future__ import annotations

import typer

from recrl_cli import __version__
from recrl_cli.cli.ablate import ablate_command
from recrl_cli.cli.check import check_app
from recrl_cli.cli.common import RecrlGroup
from recrl_cli.cli.data import prepare_command, synth_command
from recrl_cli.cli.info import AlgoCommand, algos_command
from recrl_cli.cli.text import text_app
from recrl_cli.cli.train import EXTRA_ARGS, evaluate_command, train_command
from recrl_cli.cli.ui import ui_command_cli

app = typer.Typer(
    name="recrl",
    cls=RecrlGroup,  # one error path: usage errors and interrupts become one line (also under CliRunner)
    help="Reinforcement-learning multi-task recommendation experiments: synth → prepare → train → evaluate → ablate.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

app.command("synth")(synth_command)
app.command("prepare")(prepare_command)
app.command("train", cls=AlgoCommand, context_settings=EXTRA_ARGS)(train_command)
app.command("evaluate")(evaluate_command)
app.command("ablate", cls=AlgoCommand, context_settings=EXTRA_ARGS)(ablate_command)
app.command("algos")(algos_command)
app.command("ui")(ui_command_cli)
app.add_typer(text_app, name="text")
app.add_typer(check_app, name="check")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"recrl {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version."
    ),
) -> None:
    """recrl: prepare session data, train MTL and RL recommenders, log every run to MLflow."""
