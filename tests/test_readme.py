"""The README as a test (issue 18): every `recrl` command in its code blocks and in its command table parses as
written, and the options it passes to an algorithm resolve (each is honoured, none refused or unknown).

Parsing is the full command line through click (the command, its options and their types) and, for `train` and
`ablate`, the algorithm's own options through the same resolution `recrl` runs (and every variant of a study);
placeholders such as `runs/simulator-<key>` stand for paths the reader fills in, so files are not opened.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
# What a reader types for the README's placeholders.
PLACEHOLDERS = [
    (r"<MLflow run id or name \| runs/rmtl-<key> \| model\.pt>", "runs/rmtl-0123/model.pt"),
    (r"<run id or runs/<key>>", "runs/mmoe-0123"),
    (r"<[a-z ]+>", "0123"),
    (r"\[NAME\]", "mmoe"),
    (r"hac\|ddpg\|td3\|a2c", "hac"),
    (r" \.\.\.(?= |$)", ""),
]


def readme_commands() -> list[str]:
    """Every `recrl ...` line of a bash block (continuations joined, comments cut) and of the command table."""
    text = README.read_text()
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in re.sub(r"\\\n\s*", " ", block).splitlines():
            line = re.split(r"\s#\s", line)[0].strip()
            if line.startswith("recrl "):
                commands.append(line)
    for row in re.findall(r"^\| (`recrl .*?) \|", text, re.M):  # the command table's first column
        commands += re.findall(r"`(recrl [^`]+)`", row)
    return commands


def _filled(command: str) -> list[str]:
    for pattern, value in PLACEHOLDERS:
        command = re.sub(pattern, value, command)
    return shlex.split(command)[1:]


def test_the_readme_has_commands_for_every_command_group():
    groups = {c.split()[1] for c in readme_commands()}
    assert {"synth", "prepare", "train", "evaluate", "ablate", "algos", "ui", "text"} <= groups


def _rest(ctx) -> list[str]:
    """A group's subcommand and its arguments (click keeps the subcommand name apart)."""
    return [*getattr(ctx, "_protected_args", getattr(ctx, "protected_args", [])), *ctx.args]


@pytest.mark.parametrize("command", sorted(set(readme_commands())))
def test_a_readme_command_parses_and_its_options_resolve(command, monkeypatch):
    import typer

    from recrl_cli.cli.commands import app
    from recrl_cli.cli.common import parse_extra_options
    from recrl_cli.cli.resolve import run_config_from_cli

    monkeypatch.chdir(README.parent)  # experiments/... paths are relative to the repository
    args = _filled(command)
    group = typer.main.get_command(app)
    ctx = group.make_context("recrl", list(args))
    name, cmd, rest = group.resolve_command(ctx, _rest(ctx))
    while hasattr(cmd, "resolve_command"):  # `recrl text items ...`
        ctx = cmd.make_context(name, rest, parent=ctx)
        name, cmd, rest = cmd.resolve_command(ctx, _rest(ctx))
    sub = cmd.make_context(name, rest, parent=ctx)  # click: the command's own options and their types
    if name not in ("train", "ablate"):
        assert not sub.args, f"{command}: left over {sub.args}"
        return
    p = sub.params
    common = dict(config=p["config"], sets=p["sets"], seed=p["seed"], device=p["device"], data_dir=p["data"])
    extra = parse_extra_options(sub.args)
    if name == "train":
        run_config_from_cli(p["algo"], extra=extra, **common)
        return
    from recrl_cli.cli.ablate import study_axes
    from recrl_cli.study import plan_study

    cfg = run_config_from_cli(p["algo"], **common)
    axes = study_axes(cfg, extra)
    fixed = [(key.partition(".")[2], values[0]) for key, values in axes if len(values) == 1]
    cfg = run_config_from_cli(p["algo"], extra=fixed, **common)
    plan_study(cfg, [(k, v) for k, v in axes if len(v) != 1], p["seeds"])  # every variant's config resolves
